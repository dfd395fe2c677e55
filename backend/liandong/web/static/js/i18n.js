// Chinese and English texts. The page carries both (its JSON block, from liandong/web/texts.py);
// the language is the buyer's last choice, else the browser's (navigator.language). Elements with
// data-i18n (and data-i18n-vars for {placeholders}) are re-translated when the language changes,
// so dynamic content set with setText() follows the switch too.

export const pageData = JSON.parse(document.getElementById("page-data").textContent);

const STORED = "liandong:lang";
const CHANGED = "liandong:language";

export let lang = initialLanguage();

function initialLanguage() {
  const chosen = localStorage.getItem(STORED);
  if (chosen in pageData.texts) return chosen;
  return navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function t(key, vars = {}) {
  const text = pageData.texts[lang][key] ?? pageData.texts.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** What the page knows of one of the shop's chains (name, escrow, tokens, block time, …); the
 * shop's first chain when `chainId` is not given, undefined for a chain the shop does not serve. */
export function chainData(chainId = pageData.chainId) {
  return pageData.chains.find((chain) => chain.id === chainId);
}

/** A network's name from the chain profiles the page carries, else its chain id. */
export function networkName(chainId) {
  return pageData.chain?.networks?.[String(chainId)] ?? `#${chainId}`;
}

/** Sets an element's text to a translated message that follows later language switches. */
export function setText(element, key, vars = {}) {
  element.dataset.i18n = key;
  element.dataset.i18nVars = JSON.stringify(vars);
  element.textContent = t(key, vars);
}

export function translate(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n, JSON.parse(element.dataset.i18nVars || "{}"));
  }
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.getElementById("language").lang = lang === "zh" ? "en" : "zh-CN"; // it names the other one
  document.title = t(document.body.dataset.title);
}

/** Runs `render` again whenever the buyer switches the language. */
export function onLanguageChange(render) {
  document.addEventListener(CHANGED, render);
}

function switchLanguage() {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem(STORED, lang);
  translate();
  document.dispatchEvent(new Event(CHANGED));
}

document.getElementById("language").addEventListener("click", switchLanguage);
translate();
