// The dashboard's chains: the networks the shop serves as the page carries them (pageData.chains,
// the first chain first) and their names (never a bare chain id). A token address means something
// only with its chain (the native coin is 0x0 on every chain), so amounts are formatted with the
// tokens of their own chain (`tokens.js`, given the chain id).
import { chainData, pageData } from "./i18n.js";
import { tokenInfo } from "./tokens.js";

/** The shop's chains, first first: { id, name, escrow, tokens, … } each. */
export const chains = pageData.chains;

/** Whether the shop serves several chains (the dashboard then breaks its figures down by network). */
export const severalChains = chains.length > 1;

/** The chain `chainId` of the shop, or undefined. */
export const chainOf = (chainId) => chainData(Number(chainId));

/** A network's name: the shop's chain's, else any profiled network's, else "Chain <id>". */
export function networkOf(chainId) {
  return chainOf(chainId)?.name ?? pageData.chain?.networks?.[String(chainId)] ?? `Chain ${chainId}`;
}

/** A token's label in a chart or a table: its symbol, with its network when there are several. */
export function tokenLabel(token, chainId) {
  const { symbol } = tokenInfo(token, chainId);
  return severalChains ? `${symbol} (${networkOf(chainId)})` : symbol;
}
