// DOM building for the whole dashboard, without ever parsing HTML: every string becomes a text
// node or an attribute value set through the DOM API. API data includes hostile strings from
// tracked websites (page titles, click texts, traits), so nothing here uses innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';
const SAFE_URL = /^(#|\/(?!\/)|https?:\/\/|otpauth:\/\/totp\/)/i;

function isProps(value) {
  return value !== null && typeof value === 'object' && !(value instanceof Node) && !Array.isArray(value);
}

function setProp(el, key, value) {
  if (value === undefined || value === null || value === false) return;
  if (key.startsWith('on') && typeof value === 'function') {
    el.addEventListener(key.slice(2), value);
  } else if (key === 'style' && typeof value === 'object') {
    for (const [name, v] of Object.entries(value)) if (v !== undefined && v !== null) el.style.setProperty(name, String(v));
  } else if (key === 'dataset') {
    for (const [name, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[name] = String(v);
  } else if ((key === 'href' || key === 'src') && !SAFE_URL.test(String(value))) {
    // Only our own routes, http(s) links and authenticator-app (otpauth) links: never
    // javascript: or data: URLs from the data.
  } else if (key === 'value' && 'value' in el) {
    el.value = String(value);
  } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
    el[key] = Boolean(value);
  } else {
    el.setAttribute(key, value === true ? '' : String(value));
  }
}

/** Appends children: nodes as they are, strings and numbers as text; arrays are flattened. */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false || child === '') continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function build(el, props, children) {
  if (props !== undefined && !isProps(props)) children.unshift(props);
  else if (props) for (const [key, value] of Object.entries(props)) setProp(el, key, value);
  return append(el, children);
}

/** An HTML element: h('a', { href: '#/leads', class: 'x' }, 'text', child, [more]). */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, same signature as h(). */
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Encodes one path segment of a hash route. */
export const seg = (id) => encodeURIComponent(String(id));
