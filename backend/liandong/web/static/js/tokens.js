// Amounts as people read them: the tokens' symbols and decimals come with the page (the shop
// read them from the chain once), per chain; a token it could not read is shown in base units.
// Without a chain id, the shop's first chain's.
import { formatUnits } from "../vendor/ethers.min.js";
import { chainData } from "./i18n.js";

export const NATIVE = "0x0000000000000000000000000000000000000000";

export function tokenInfo(token, chainId) {
  const known = chainData(chainId)?.tokens[token.toLowerCase()];
  return known ?? { symbol: `${token.slice(0, 6)}…`, decimals: null };
}

/** A decimal number of whole tokens, exact (BigInt), without a trailing ".0". */
export function units(amount, token, chainId) {
  const { decimals } = tokenInfo(token, chainId);
  return decimals === null
    ? BigInt(amount).toString()
    : formatUnits(BigInt(amount), decimals).replace(/\.0$/, "");
}

export function formatAmount(amount, token, chainId) {
  return `${units(amount, token, chainId)} ${tokenInfo(token, chainId).symbol}`;
}
