// Opening the box the shop seals the keys in: X25519 → HKDF-SHA256 → AES-256-GCM, with the order
// id as associated data, exactly as liandong/vault/transport.py documents. The private key is
// made per page load and cannot be exported: the keys exist in the clear only in this page.
import { getBytes } from "../vendor/ethers.min.js";

const INFO = new TextEncoder().encode("liandong/key-transport/v1");

const b64u = (bytes) =>
  btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const unb64u = (text) =>
  Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** A fresh key pair; `publicKey` (base64url) goes with the request for the keys. */
export async function newKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, raw, publicKey: b64u(raw) };
}

/** The plaintext of `box` (text), or a rejection when it was tampered with or is not ours. */
export async function openSealed(box, pair, orderId) {
  const epk = unb64u(box.epk);
  const peer = await crypto.subtle.importKey("raw", epk, { name: "X25519" }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "X25519", public: peer }, pair.privateKey, 256);
  const hkdf = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const salt = new Uint8Array([...epk, ...pair.raw]);
  const aes = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: INFO },
    hkdf,
    { name: "AES-GCM", length: 256 },
    false,
    ["decrypt"],
  );
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: unb64u(box.nonce), additionalData: getBytes(orderId) },
    aes,
    unb64u(box.ct),
  );
  return new TextDecoder().decode(plain);
}
