"""What a share link opened in a browser runs: the page and its script (``/s/<id>``).

Kept apart from the server's routes (``server/share_page.py``) so that
``livedata share`` can print the page's SHA-256 without importing the server.

The page is served by the same server that stores the share.  Whoever runs
that server (or breaks into it) could serve a page whose script reads the
key from the link's fragment: no page can prevent that, as with every
in-browser decryption (Firefox Send had the same limit).  What the page
does: its script is pinned by Subresource Integrity, its Content Security
Policy allows nothing but that script, one inline style and requests to its
own origin, it says so to its reader, and the sender's ``livedata share``
prints the page's SHA-256 (:func:`page_sha256`), so a careful recipient can
compare it with what she was served (``curl -s https://HOST/s/ID | sha256sum``).
The ``livedata download`` command is the trusted way to open a link.
"""

from __future__ import annotations

import base64
import hashlib

SHARE_JS = r"""
"use strict";
const enc = new TextEncoder();
const dec = new TextDecoder();

class ShareError extends Error {}

function b64Decode(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

function toHex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

async function hkdf(ikm, salt, info, bits) {
  const k = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const out = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: enc.encode(info) }, k, bits);
  return new Uint8Array(out);
}

const TAMPERED = "The shared data was changed after it was shared: nothing was saved.";

// The envelope: "LDS\x01" || u16 public length || public JSON || check (16) || nonce || AES-GCM.
async function openManifest(secret, blob) {
  if (blob.length < 6 || !equal(blob.subarray(0, 4), new Uint8Array([0x4c, 0x44, 0x53, 0x01]))) {
    throw new ShareError("This link does not lead to a livedata share.");
  }
  const n = (blob[4] << 8) | blob[5];
  const pubBytes = blob.subarray(6, 6 + n);
  const check = blob.subarray(6 + n, 6 + n + 16);
  const body = blob.subarray(6 + n + 16);
  const pub = JSON.parse(dec.decode(pubBytes));
  if (pub.kdf) throw new ShareError("This share is protected by a password: open it with 'livedata download'.");
  const salt = fromHex(pub.salt);
  const info = "livedata/v1/share/" + pub.id;
  const key = await hkdf(secret, salt, info + "/manifest", 256);
  if (!equal(await hkdf(secret, salt, info + "/check", 128), check)) {
    throw new ShareError("The key in this link does not open the share (was the link cut short?).");
  }
  const k = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: body.subarray(0, 12), additionalData: concat(blob.subarray(0, 4), pubBytes) },
      k, body.subarray(12));
  } catch (e) {
    throw new ShareError(TAMPERED);
  }
  const m = JSON.parse(dec.decode(plain));
  if (m.id !== pub.id) throw new ShareError(TAMPERED);
  return m;
}

function nonce(index, final) {
  const out = new Uint8Array(12);
  let i = index;
  for (let p = 10; p >= 0 && i > 0; p--) { out[p] = i % 256; i = Math.floor(i / 256); }
  out[11] = final ? 1 : 0;
  return out;
}

// A container (DESIGN §4) from an async iterator of byte chunks; each
// authenticated plaintext segment goes to onPlain, in order.
async function decryptContainer(dataKey, headerHash, chunks, onPlain) {
  let buf = new Uint8Array(0);
  let done = false;
  async function fill(want) {
    while (!done && buf.length < want) {
      const next = await chunks.next();
      if (next.done) done = true; else buf = concat(buf, next.value);
    }
  }
  await fill(102);
  if (buf.length < 102) throw new ShareError(TAMPERED);
  const header = buf.slice(0, 102);
  buf = buf.slice(102);
  if (!equal(header.subarray(0, 4), new Uint8Array([0x4c, 0x44, 0x56, 0x01])) || header[4] !== 1
      || header[5] < 10 || header[5] > 24) throw new ShareError(TAMPERED);
  if (toHex(await crypto.subtle.digest("SHA-256", header)) !== headerHash) throw new ShareError(TAMPERED);
  const salt = header.subarray(6, 38), commit = header.subarray(38, 70), mac = header.subarray(70, 102);
  if (!equal(await hkdf(dataKey, salt, "livedata/v1/commit", 256), commit)) throw new ShareError(TAMPERED);
  const hk = await crypto.subtle.importKey("raw", await hkdf(dataKey, salt, "livedata/v1/header", 256),
    { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  if (!await crypto.subtle.verify("HMAC", hk, mac, header.subarray(0, 70))) throw new ShareError(TAMPERED);
  const pk = await crypto.subtle.importKey("raw", await hkdf(dataKey, salt, "livedata/v1/payload", 256),
    "AES-GCM", false, ["decrypt"]);
  const segLen = (1 << header[5]) + 16;
  let index = 0;
  async function open(seg, final) {
    try {
      return new Uint8Array(await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: nonce(index, final), additionalData: mac }, pk, seg));
    } catch (e) {
      throw new ShareError(TAMPERED);
    }
  }
  for (;;) {
    await fill(segLen + 1);
    if (buf.length > segLen) {
      onPlain(await open(buf.slice(0, segLen), false));
      buf = buf.slice(segLen);
      index++;
      continue;
    }
    if (buf.length < 16 || (buf.length === 16 && index > 0)) throw new ShareError(TAMPERED);
    onPlain(await open(buf, true));
    return;
  }
}

async function failure(r) {
  try { return (await r.json()).detail || ("HTTP " + r.status); } catch (e) { return "HTTP " + r.status; }
}

// What a share holds, from its manifest decrypted here: name, size, type, expiry,
// and the downloads the server says are left. Nothing is downloaded yet.
async function describeShare(origin, id, keyText) {
  const [secretText, ...hint] = keyText.split(".");
  if (hint.length) throw new ShareError("This share is protected by a password: open it with 'livedata download'.");
  let secret;
  try { secret = b64Decode(secretText); } catch (e) { secret = new Uint8Array(0); }
  if (secret.length !== 32) throw new ShareError("The key in this link is damaged (the part after #).");
  const r = await fetch(origin + "/api/v1/shares/" + id + "/public");
  if (!r.ok) throw new ShareError("This share cannot be opened: " + await failure(r));
  const pub = await r.json();
  const m = await openManifest(secret, b64Decode(pub.manifest));
  if (m.expires && Date.now() / 1000 >= m.expires) throw new ShareError("This share has expired.");
  return {
    manifest: m,
    name: String(m.name || "shared-file").split("/").pop(),
    size: m.size,
    mime: m.mime || "application/octet-stream",
    expires: m.expires || null,
    downloadsLeft: pub.downloads_left,
  };
}

function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? n.toFixed(1) + " " + units[i] : n + " B";
}

// Open a share: its manifest, then its data; returns the name, type and plaintext parts.
async function openShare(origin, id, keyText, onProgress) {
  const about = await describeShare(origin, id, keyText);
  const m = about.manifest;
  const d = await fetch(origin + "/api/v1/shares/" + id + "/download");
  if (!d.ok) throw new ShareError("This share cannot be downloaded: " + await failure(d));
  const reader = d.body.getReader();
  const chunks = { next: () => reader.read() };
  const parts = [];
  let size = 0;
  await decryptContainer(fromHex(m.key), m.header_hash, chunks, (p) => {
    parts.push(p); size += p.length; if (onProgress) onProgress(size, m.size);
  });
  if (size !== m.size) throw new ShareError(TAMPERED);
  return { name: String(m.name || "shared-file").split("/").pop(), mime: m.mime || "application/octet-stream", parts };
}

function main() {
  const status = document.getElementById("status");
  const button = document.getElementById("get");
  const id = location.pathname.split("/").filter(Boolean).pop();
  const key = decodeURIComponent(location.hash.slice(1));
  if (!key) { status.textContent = "This link has no key (the part after #): ask for the whole link."; return; }
  describeShare(location.origin, id, key).then((about) => {
    document.getElementById("name").textContent = about.name;
    const facts = [humanSize(about.size), about.mime];
    if (about.expires) facts.push("until " + new Date(about.expires * 1000).toLocaleString());
    if (about.downloadsLeft !== null && about.downloadsLeft !== undefined) {
      facts.push(about.downloadsLeft + " download" + (about.downloadsLeft === 1 ? "" : "s") + " left");
    }
    document.getElementById("facts").textContent = facts.join(" · ");
    button.disabled = false;
  }, (e) => {
    status.textContent = e instanceof ShareError ? e.message : "Failed: " + e;
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Downloading and decrypting…";
    try {
      const got = await openShare(location.origin, id, key, (n, total) => {
        status.textContent = "Decrypted " + Math.floor(100 * n / Math.max(total, 1)) + "%";
      });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob(got.parts, { type: got.mime }));
      a.download = got.name;
      document.body.appendChild(a);
      a.click();
      status.textContent = "Saved " + got.name + ".";
    } catch (e) {
      status.textContent = e instanceof ShareError ? e.message : "Failed: " + e;
    }
  });
}

if (typeof document !== "undefined") main();
if (typeof module !== "undefined") module.exports = { openShare, describeShare, ShareError };
"""

STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}
button{font-size:1em;padding:.5em 1.5em}.note{font-size:.9em;color:#444}"""


def _sri(text: str, algorithm: str) -> str:
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, text.encode()).digest()).decode()


SCRIPT_INTEGRITY = _sri(SHARE_JS, "sha384")

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>A file shared with livedata</title>
<style>{STYLE}</style>
</head>
<body>
<h1>A file shared with you</h1>
<p><strong id="name">…</strong><br><span id="facts"></span></p>
<p>Its name and size were decrypted here, in this page, with the key in the link, and so is the file; the key is never sent to the server.</p>
<p><button id="get" disabled>Download</button></p>
<p id="status"></p>
<p class="note">This page comes from the server that stores the share. Whoever runs that server, or breaks
into it, could change the page to read the key in the link. The trusted way to open this link is the
livedata command: <code>livedata download 'LINK'</code>. To check this page, compare its SHA-256
(<code>curl -s URL | sha256sum</code>, URL without the part after #) with the one the sender's
<code>livedata share</code> printed.</p>
<script src="/s/share.js" integrity="{SCRIPT_INTEGRITY}" crossorigin="anonymous"></script>
</body>
</html>
"""

CSP = (
    f"default-src 'none'; script-src 'self'; connect-src 'self'; style-src '{_sri(STYLE, 'sha256')}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'"
)


def page_sha256() -> str:
    """The SHA-256 (hex) of the page ``/s/<id>`` of this livedata version (the same for every share)."""
    return hashlib.sha256(PAGE.encode()).hexdigest()
