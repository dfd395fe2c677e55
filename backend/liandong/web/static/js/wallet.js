// The buyer's wallet through EIP-1193 (window.ethereum): accounts, network, transactions.
// Failures become a Problem naming a text, so the page can say what happened in the
// buyer's language.
import { hexlify, toQuantity, toUtf8Bytes } from "../vendor/ethers.min.js";
import { sleep } from "./api.js";
import { chainData, networkName } from "./i18n.js";

export class Problem extends Error {
  constructor(key, vars = {}) {
    super(key);
    this.key = key;
    this.vars = vars;
  }
}

export const REJECTED = 4001; // EIP-1193: the user rejected the request
const UNKNOWN_CHAIN = 4902; // wallet_switchEthereumChain: the wallet does not know the chain

export function request(method, params = []) {
  if (!window.ethereum) throw new Problem("no_wallet");
  return window.ethereum.request({ method, params });
}

export async function connect() {
  const [account] = await request("eth_requestAccounts");
  if (!account) throw new Problem("no_account");
  return account;
}

/** The chain id the wallet is on. */
export async function currentChain() {
  return Number(BigInt(await request("eth_chainId")));
}

/** Throws `wrong_network` unless the wallet is on `chainId`. */
export async function requireChain(chainId) {
  const current = await currentChain();
  if (current !== chainId) {
    throw new Problem("wrong_network", { current: networkName(current), expected: networkName(chainId) });
  }
}

/** Asks the wallet to switch to `chainId`, one of the shop's chains. A wallet that does not know
 * that network is asked to add it first, with what the chain's profile says (EIP-3085: name, coin,
 * public RPC, explorer). */
export async function switchChain(chainId) {
  const params = [{ chainId: toQuantity(chainId) }];
  try {
    await request("wallet_switchEthereumChain", params);
  } catch (error) {
    if (error?.code !== UNKNOWN_CHAIN) throw error;
    const add = chainData(chainId)?.add;
    if (!add) throw new Problem("unknown_chain", { expected: networkName(chainId) });
    await request("wallet_addEthereumChain", [add]);
    await request("wallet_switchEthereumChain", params);
  }
}

/** personal_sign of a text (Sign-In with Ethereum). */
export function signMessage(account, text) {
  return request("personal_sign", [hexlify(toUtf8Bytes(text)), account]);
}

/** Waits until the transaction is mined; throws `transaction_failed` if it reverted. */
export async function waitForReceipt(hash) {
  for (;;) {
    const receipt = await request("eth_getTransactionReceipt", [hash]);
    if (receipt) {
      if (receipt.status !== "0x1") throw new Problem("transaction_failed", { hash });
      return receipt;
    }
    await sleep(1000);
  }
}
