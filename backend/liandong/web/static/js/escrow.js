// Paying the escrow and checking its record of a delivery, from the buyer's wallet.
//   native coin: pay(quote, signature) with the amount as value
//   ERC-20: payWithPermit(quote, signature, permit) when the token signs EIP-2612 permits and the
//           wallet signs typed data; otherwise approve(escrow, amount), then pay(quote, signature)
// Each payment is first tried with eth_call, so a quote the escrow would refuse (expired, already
// paid) is explained before the wallet asks the buyer to sign anything.
import { Interface, Signature, concat, keccak256, toQuantity, toUtf8Bytes } from "../vendor/ethers.min.js";
import { NATIVE, formatAmount } from "./tokens.js";
import { REJECTED, Problem, request, waitForReceipt } from "./wallet.js";

const QUOTE =
  "(bytes32 orderId, uint256 productId, uint256 quantity, address token, uint256 amount, " +
  "address buyer, uint64 expiry, uint64 deliveryDeadline)";
const PERMIT = "(uint256 deadline, uint8 v, bytes32 r, bytes32 s)";
const escrowAbi = new Interface([
  `function pay(${QUOTE} quote, bytes signature) payable`,
  `function payWithPermit(${QUOTE} quote, bytes signature, ${PERMIT} permit)`,
  "event OrderDelivered(bytes32 indexed orderId, bytes32 commitment, uint256 fee)",
  "error InvalidQuoteSignature()",
  "error QuoteExpired(uint64 expiry)",
  "error WrongBuyer(address expected, address caller)",
  "error OrderAlreadyExists(bytes32 orderId)",
  "error WrongAmount(uint256 expected, uint256 received)",
  "error PaymentsArePaused()",
]);
const erc20Abi = new Interface([
  "function balanceOf(address owner) view returns (uint256)",
  "function allowance(address owner, address spender) view returns (uint256)",
  "function approve(address spender, uint256 amount) returns (bool)",
  "function nonces(address owner) view returns (uint256)",
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, " +
    "address verifyingContract, bytes32 salt, uint256[] extensions)",
  "error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)",
]);
const REVERT_REASONS = {
  QuoteExpired: "quote_expired",
  OrderAlreadyExists: "already_paid",
  InvalidQuoteSignature: "bad_quote",
  WrongBuyer: "wrong_buyer",
  WrongAmount: "bad_quote",
  PaymentsArePaused: "payments_paused",
  ERC20InsufficientBalance: "balance_too_low",
};
const EXPIRY_MARGIN_SECONDS = 30; // a payment must be mined before the quote expires
const PERMIT_DOMAIN_FIELDS = "0x0f"; // ERC-5267: name, version, chainId, verifyingContract

async function tokenCall(token, name, args) {
  const data = await request("eth_call", [
    { to: token, data: erc20Abi.encodeFunctionData(name, args) },
    "latest",
  ]);
  return erc20Abi.decodeFunctionResult(name, data);
}

function requireBalance(balance, quote, chainId) {
  if (balance < BigInt(quote.amount)) {
    throw new Problem("too_little_balance", {
      have: formatAmount(balance, quote.token, chainId),
      need: formatAmount(quote.amount, quote.token, chainId),
    });
  }
}

export function quoteExpired(quote) {
  return quote.expiry <= Date.now() / 1000 + EXPIRY_MARGIN_SECONDS;
}

/** Tries the transaction with eth_call (a revert is explained), then asks the wallet to send it. */
async function send(tx, progress) {
  await request("eth_call", [tx, "latest"]);
  progress("confirm_in_wallet");
  return request("eth_sendTransaction", [tx]);
}

/** An EIP-2612 permit for the escrow, or null when the token or the wallet cannot do it. */
async function signPermit(account, quote, escrow, progress) {
  let domain;
  let nonce;
  try {
    const [fields, name, version, chainId] = await tokenCall(quote.token, "eip712Domain", []);
    if (fields !== PERMIT_DOMAIN_FIELDS) return null;
    [nonce] = await tokenCall(quote.token, "nonces", [account]);
    domain = { name, version, chainId: Number(chainId), verifyingContract: quote.token };
  } catch {
    return null; // not an EIP-2612/ERC-5267 token: approve instead
  }
  const typed = {
    types: {
      EIP712Domain: [
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
        { name: "verifyingContract", type: "address" },
      ],
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    primaryType: "Permit",
    domain,
    message: {
      owner: account,
      spender: escrow,
      value: quote.amount,
      nonce: nonce.toString(),
      deadline: quote.expiry,
    },
  };
  progress("sign_permit");
  try {
    const { v, r, s } = Signature.from(
      await request("eth_signTypedData_v4", [account, JSON.stringify(typed)]),
    );
    return { deadline: quote.expiry, v, r, s };
  } catch (error) {
    if (error?.code === REJECTED) throw error;
    return null; // the wallet does not sign typed data: approve instead
  }
}

/**
 * Pays a quote from `account` to the escrow of `chain` (the page data's, the wallet on it); returns
 * the payment's transaction hash once the wallet sent it. `progress(key)` is told each step, for
 * the page to show ("confirm in your wallet", …).
 */
export async function payQuote({ account, quote, signature, chain, progress }) {
  if (quoteExpired(quote)) throw new Problem("quote_expired");
  const escrow = chain.escrow;
  const payment = { from: account, to: escrow };
  if (quote.token === NATIVE) {
    requireBalance(BigInt(await request("eth_getBalance", [account, "latest"])), quote, chain.id);
    const data = escrowAbi.encodeFunctionData("pay", [quote, signature]);
    return send({ ...payment, value: toQuantity(BigInt(quote.amount)), data }, progress);
  }
  requireBalance((await tokenCall(quote.token, "balanceOf", [account]))[0], quote, chain.id);
  const [allowance] = await tokenCall(quote.token, "allowance", [account, escrow]);
  if (allowance < BigInt(quote.amount)) {
    const permit = await signPermit(account, quote, escrow, progress);
    if (permit) {
      const data = escrowAbi.encodeFunctionData("payWithPermit", [quote, signature, permit]);
      return send({ ...payment, data }, progress);
    }
    progress("approve_in_wallet");
    const data = erc20Abi.encodeFunctionData("approve", [escrow, quote.amount]);
    const approval = await request("eth_sendTransaction", [{ from: account, to: quote.token, data }]);
    progress("waiting_for_approval");
    await waitForReceipt(approval);
  }
  return send({ ...payment, data: escrowAbi.encodeFunctionData("pay", [quote, signature]) }, progress);
}

/** The revert data inside a wallet's or node's error, wherever that wallet puts it. */
function revertData(error, depth = 0) {
  if (typeof error === "string") return /^0x[0-9a-f]{8}/i.test(error) ? error : null;
  if (!error || typeof error !== "object" || depth > 4) return null;
  for (const key of ["data", "error", "cause", "originalError"]) {
    const found = revertData(error[key], depth + 1);
    if (found) return found;
  }
  return null;
}

/** What went wrong, as a Problem naming a text: rejected, expired, too poor, … */
export function explain(error) {
  if (error instanceof Problem) return error;
  if (error?.code === REJECTED) return new Problem("rejected");
  if (error?.code === -32002) return new Problem("wallet_busy");
  const data = revertData(error);
  for (const abi of [escrowAbi, erc20Abi]) {
    const decoded = data && abi.parseError(data);
    if (decoded && decoded.name in REVERT_REASONS) return new Problem(REVERT_REASONS[decoded.name]);
  }
  if (/insufficient funds/i.test(error?.message ?? "")) return new Problem("too_little_for_gas");
  return new Problem("wallet_failed", { reason: error?.message ?? String(error) });
}

/** keccak256(orderId ‖ salt ‖ keccak256(keccak256(key₁) ‖ … ‖ keccak256(keyₙ))), as the shop
 * commits to the delivered keys (liandong.vault.crypto.delivery_commitment). */
export function commitmentOf(orderId, salt, keys) {
  const keysHash = keccak256(concat(keys.map((key) => keccak256(toUtf8Bytes(key)))));
  return keccak256(concat([orderId, salt, keysHash]));
}

/** The commitment of the escrow's OrderDelivered event for the order, or null while there is none. */
export async function commitmentOnChain(escrow, orderId, fromBlock) {
  const event = escrowAbi.getEvent("OrderDelivered");
  const logs = await request("eth_getLogs", [
    {
      address: escrow,
      topics: [event.topicHash, orderId],
      fromBlock: toQuantity(fromBlock),
      toBlock: "latest",
    },
  ]);
  if (!logs.length) return null;
  const last = logs[logs.length - 1];
  return escrowAbi.decodeEventLog(event, last.data, last.topics).commitment;
}
