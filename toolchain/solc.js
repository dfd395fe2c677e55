#!/usr/bin/env node
// A `solc` command over npm's solcjs for machines where no native solc can be installed.
// It answers the two calls py-solc-x, ape-solidity and forge make: `--version` and
// `--standard-json` (input on stdin, output on stdout), and resolves imports the way native
// solc does, from --base-path, --include-path and --allow-paths. The plain `solcjs` CLI is
// not enough: it prints a stray line before the JSON and truncates output past 64 KiB.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, basePath: null, includePaths: [], allowPaths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inlineValue] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, null];
    const value = () => (inlineValue !== null ? inlineValue : argv[++i]);
    switch (flag) {
      case '--version': opts.version = true; break;
      case '--standard-json': opts.standardJson = true; break;
      case '--base-path': opts.basePath = value(); break;
      case '--include-path': opts.includePaths.push(value()); break;
      case '--allow-paths': opts.allowPaths.push(...value().split(',').filter(Boolean)); break;
      case '-': break; // stdin, implied by --standard-json
      default:
        throw new Error(`unsupported argument ${arg}: this solc (solcjs) only supports --version and --standard-json`);
    }
  }
  return opts;
}

function readStdin() {
  const chunks = [];
  const buffer = Buffer.alloc(1 << 16);
  for (;;) {
    let bytes;
    try {
      bytes = fs.readSync(0, buffer, 0, buffer.length, null);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;
      if (err.code === 'EOF') break;
      throw err;
    }
    if (bytes === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, bytes)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function writeAll(fd, text) {
  const data = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function importResolver(opts) {
  const roots = [opts.basePath || process.cwd(), ...opts.includePaths, ...opts.allowPaths];
  return (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((root) => path.resolve(root, importPath));
    for (const candidate of candidates) {
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
        return { contents: fs.readFileSync(candidate, 'utf8') };
      }
    }
    return { error: `File not found: ${importPath} (searched ${roots.join(', ')})` };
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.version) {
    writeAll(1, `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return 0;
  }
  if (!opts.standardJson) {
    writeAll(2, 'usage: solc --version | solc --standard-json [--base-path P] [--include-path P] < input.json\n');
    return 1;
  }
  const output = solc.compile(readStdin(), { import: importResolver(opts) });
  writeAll(1, output + '\n');
  return 0;
}

try {
  process.exitCode = main();
} catch (err) {
  writeAll(2, `solc: ${err.message}\n`);
  process.exitCode = 1;
}
