#!/usr/bin/env node
// Sourcify's own verdict on what `liandong verify-contract` wrote: lib-sourcify takes the metadata
// and the sources (from the standard-JSON input), recompiles them with the solcjs of node_modules
// (the one the toolchain's solc shim runs; nothing is downloaded), reads the code at the address
// from the chain's RPC and matches it. Prints one JSON line: {"runtimeMatch": "perfect" | "partial"
// | null, "creationMatch": ...}; exits 1 if lib-sourcify throws.
//
//   node tests/cli/sourcify_check.mjs <out-dir> <rpc-url> <chain-id> <address> [<creation-tx-hash>]
import fs from 'node:fs';
import path from 'node:path';
import solc from 'solc';
import {
  SolidityMetadataContract,
  SourcifyChain,
  Verification,
  setLibSourcifyLoggerLevel,
} from '@ethereum-sourcify/lib-sourcify';

const [outDir, rpc, chainId, address, creatorTxHash] = process.argv.slice(2);

class LocalSolc {
  // lib-sourcify's ISolidityCompiler, over the local solcjs only.
  async compile(version, input) {
    if (!version.startsWith(solc.version().replace(/\.Emscripten\.clang$/, ''))) {
      throw new Error(`metadata asks for solc ${version}; node_modules has ${solc.version()} (no downloads)`);
    }
    const output = JSON.parse(solc.compile(JSON.stringify(input)));
    const errors = (output.errors || []).filter((e) => e.severity === 'error');
    if (errors.length > 0) {
      throw Object.assign(new Error(errors.map((e) => e.formattedMessage).join('\n')), { errors });
    }
    return output;
  }
}

async function main() {
  setLibSourcifyLoggerLevel(0);
  const metadata = JSON.parse(fs.readFileSync(path.join(outDir, 'metadata.json'), 'utf8'));
  const input = JSON.parse(fs.readFileSync(path.join(outDir, 'standard-json-input.json'), 'utf8'));
  const sources = Object.entries(input.sources).map(([unit, { content }]) => ({ path: unit, content }));
  const contract = new SolidityMetadataContract(metadata, sources);
  if (!contract.isCompilable()) {
    throw new Error(`sources missing: ${Object.keys(contract.missingSources).join(', ')}; invalid: ` +
      Object.keys(contract.invalidSources).join(', '));
  }
  const compilation = await contract.createCompilation(new LocalSolc());
  const chain = new SourcifyChain({ name: 'local', chainId: Number(chainId), rpcs: [{ rpc }], supported: true });
  const verification = new Verification(compilation, chain, address, creatorTxHash || undefined);
  await verification.verify();
  process.stdout.write(JSON.stringify(verification.status) + '\n');
}

main().catch((error) => {
  process.stderr.write(`sourcify_check: ${error.stack || error}\n`);
  process.exitCode = 1;
});
