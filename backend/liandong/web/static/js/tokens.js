// Amounts as people read them: the tokens' symbols and decimals come with the page (the shop
// read them from the chain once); a token it could not read is shown in base units.
import { formatUnits } from "../vendor/ethers.min.js";
import { pageData } from "./i18n.js";

export const NATIVE = "0x0000000000000000000000000000000000000000";

export function tokenInfo(token) {
  return pageData.tokens[token.toLowerCase()] ?? { symbol: `${token.slice(0, 6)}…`, decimals: null };
}

/** A decimal number of whole tokens, exact (BigInt), without a trailing ".0". */
export function units(amount, token) {
  const { decimals } = tokenInfo(token);
  return decimals === null
    ? BigInt(amount).toString()
    : formatUnits(BigInt(amount), decimals).replace(/\.0$/, "");
}

export function formatAmount(amount, token) {
  return `${units(amount, token)} ${tokenInfo(token).symbol}`;
}
