#!/usr/bin/env bash
# Regenerates the bot user-agent pattern list of the crm-bots crate (shared/bots) from two
# pinned npm packages: isbot (its exported `list`) and crawler-user-agents (the `pattern`
# field of crawler-user-agents.json). Each tarball is checked against the registry's sha512
# integrity before use. Patterns are trimmed, emptied ones dropped, exact duplicates merged,
# the ones listed in shared/bots/data/exclude.txt removed, and the rest split by dialect:
#   shared/bots/data/patterns.txt        plain: Rust `regex` crate syntax
#   shared/bots/data/patterns-fancy.txt  look-around, backreferences, atomic groups, possessive
#                                        quantifiers: needs `fancy-regex`
# Every pattern is meant to be searched case-insensitively, unanchored, in the whole UA string.
# Patterns whose syntax means something different in Rust than in JavaScript (where both
# sources test them) make the script stop with a list, so that a person decides.
#
# With --corpora it also rewrites the evaluation corpora in shared/bots/tests/corpora/
# (gzip'd, one UA a line, `#` header lines naming source, integrity, licence, selection):
#   bots-insample.txt.gz     every instance of crawler-user-agents@$CUA_VERSION (regression)
#   bots-heldout.txt.gz      time split: instances of crawler-user-agents@$CUA_NEW_VERSION
#                            (PyPI) whose pattern is not in $CUA_VERSION: new crawlers only
#   bots-crawlerdetect.txt.gz  independent source: CrawlerDetect's crawler fixtures (PyPI
#                            crawlerdetect sdist), minus UAs that are $CUA_VERSION instances
#   bots-uap.txt.gz          Spider entries of uap-core's tests/test_ua.yaml, only if the npm
#                            package ships that file (0.18.0 does not; then nothing is written)
#   browsers.txt.gz          npm user-agents data, `weight<TAB>UA`, duplicates' weights summed
#   browsers-top.txt.gz      npm top-user-agents index.json (top 100, ranked, unweighted)
#   browsers-longtail.txt.gz deterministic 1-in-$LONGTAIL_STEP sample of CrawlerDetect's
#                            non-crawler fixtures (old phones, in-app browsers, consoles...)
# PyPI files are pinned by sha256 (what PyPI publishes); their sha512 is recorded as well.
#
# Usage: scripts/update-bot-list.sh [--corpora]     (from any directory)
# Then:  python3 shared/bots/tests/eval_bots.py     (recall / false-positive report)
# Needs: npm, node, python3 (pip, for --corpora, in a venv under ~/.cache/crm-tools).
set -euo pipefail

ISBOT_VERSION=5.2.3
CUA_VERSION=1.60.0
# corpora only
CUA_NEW_VERSION=1.67.0
CUA_NEW_WHEEL_SHA256=438880782e9689d953f850846bb7a425dd444de02be2b7c3e1bf2dd636b65d8c
CRAWLERDETECT_VERSION=0.4.2
CRAWLERDETECT_SDIST_SHA256=2ecbc825ec9bbfe94d1878078fbc3d336ed4b247a00dd56691479554ca3cb2ef
UAP_CORE_VERSION=0.18.0
USER_AGENTS_VERSION=2.1.198
TOP_USER_AGENTS_VERSION=2.1.138
LONGTAIL_STEP=40

corpora=0
for arg in "$@"; do
  case "$arg" in
    --corpora) corpora=1 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in npm node python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
data=shared/bots/data
corp=shared/bots/tests/corpora
mkdir -p "$data"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# sha512 integrity string (npm's format) of file $1
integrity_of() {
  python3 -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}

# npm_fetch PKG VERSION: packs, verifies and extracts PKG@VERSION into $tmp/PKG; writes
# $tmp/PKG.meta (integrity and licence lines)
npm_fetch() {
  local pkg="$1" ver="$2" expected actual tgz
  expected="$(npm view "$pkg@$ver" dist.integrity)"
  [ -n "$expected" ] || { echo "npm has no integrity for $pkg@$ver" >&2; exit 1; }
  mkdir -p "$tmp/pack" "$tmp/$pkg"
  tgz="$(cd "$tmp/pack" && npm pack --silent "$pkg@$ver" | tail -n 1)"
  actual="$(integrity_of "$tmp/pack/$tgz")"
  if [ "$actual" != "$expected" ]; then
    echo "integrity mismatch for $pkg@$ver: registry $expected, tarball $actual" >&2
    exit 1
  fi
  tar -xzf "$tmp/pack/$tgz" -C "$tmp/$pkg"
  python3 - "$tmp/$pkg/package/package.json" "$actual" > "$tmp/$pkg.meta" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
lic = p.get("license")
if not lic and p.get("licenses"):
    lic = " OR ".join(x.get("type", "?") for x in p["licenses"])
if isinstance(lic, dict):
    lic = lic.get("type", "?")
print(sys.argv[2])
print(lic or "UNKNOWN")
PY
  echo "verified $pkg@$ver $actual" >&2
}

# pypi_fetch NAME VERSION SHA256 KIND(wheel|sdist): downloads into $tmp/pypi, checks the pin,
# prints the file path
pypi_fetch() {
  local name="$1" ver="$2" sha="$3" kind="$4" venv binary
  venv="${CRM_TOOLS_DIR:-$HOME/.cache/crm-tools}/pip-download"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  if [ "$kind" = wheel ]; then binary=--only-binary=:all:; else binary=--no-binary=:all:; fi
  mkdir -p "$tmp/pypi-$name"
  "$venv/bin/pip" download --quiet --no-deps "$binary" -d "$tmp/pypi-$name" "$name==$ver" >&2
  python3 - "$tmp/pypi-$name" "$sha" <<'PY'
import hashlib, os, sys
d, want = sys.argv[1], sys.argv[2]
files = [os.path.join(d, f) for f in os.listdir(d)]
if len(files) != 1:
    sys.exit(f"expected one file in {d}, got {files}")
got = hashlib.sha256(open(files[0], "rb").read()).hexdigest()
if got != want:
    sys.exit(f"sha256 mismatch for {files[0]}: pinned {want}, got {got}")
print(files[0])
PY
}

npm_fetch isbot "$ISBOT_VERSION"
npm_fetch crawler-user-agents "$CUA_VERSION"

node -e 'process.stdout.write(JSON.stringify(require(process.argv[1]).list))' \
  "$tmp/isbot/package/index.js" > "$tmp/isbot-list.json"
cua_json="$tmp/crawler-user-agents/package/crawler-user-agents.json"

# ---- patterns -------------------------------------------------------------------------------
python3 - "$data" "$tmp" "$ISBOT_VERSION" "$CUA_VERSION" "$cua_json" <<'PY'
import datetime, json, os, re, sys

data, tmp, isbot_v, cua_v, cua_json = sys.argv[1:6]

def meta(pkg):
    integ, lic = open(os.path.join(tmp, pkg + ".meta")).read().split("\n")[:2]
    return integ, lic

sources = []  # (label, [patterns])
isbot = json.load(open(os.path.join(tmp, "isbot-list.json")))
sources.append((f"isbot@{isbot_v}", "isbot", isbot))
cua = [e["pattern"] for e in json.load(open(cua_json))]
sources.append((f"crawler-user-agents@{cua_v}", "crawler-user-agents", cua))

# exclude.txt: `<pattern>\t# reason`; `#` lines are comments
excluded = {}
ex_path = os.path.join(data, "exclude.txt")
if os.path.exists(ex_path):
    for n, line in enumerate(open(ex_path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        pat, _, reason = line.partition("\t")
        if not pat.strip():
            sys.exit(f"exclude.txt:{n}: empty pattern")
        excluded[pat.strip()] = reason.strip()

seen, merged, raw_total, empty = set(), [], 0, 0
for _, _, pats in sources:
    for p in pats:
        raw_total += 1
        p = p.strip()
        if not p:
            empty += 1
            continue
        if p in seen:
            continue
        seen.add(p)
        merged.append(p)
dupes = raw_total - empty - len(merged)
unused_ex = sorted(set(excluded) - seen)
kept = [p for p in merged if p not in excluded]

# ---- dialect / hazard analysis ---------------------------------------------------------------
# Both sources are JavaScript regexes (no `u` flag). Anything below that Rust's `regex` parses
# differently, or not at all, is either routed to the fancy file or reported as a hazard.
KNOWN_ESCAPES = set("dDwWsSbBnrtfv")  # letter escapes meaning the same in JS, Python, Rust
FANCY_RES = [
    (re.compile(r"\(\?<?[=!]"), "look-around"),
    (re.compile(r"\\[1-9]|\\k<"), "backreference"),
    (re.compile(r"\(\?>"), "atomic group"),
    (re.compile(r"(?:[*+?]|\})\+"), "possessive quantifier"),
]

def scan(p):
    """Returns (fancy_reasons, hazards) for pattern p, walking escapes and classes."""
    fancy = [why for rx, why in FANCY_RES if rx.search(p)]
    hazards = []
    i, in_class, class_start = 0, False, 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            if i + 1 >= len(p):
                hazards.append("trailing backslash")
                break
            e = p[i + 1]
            if e.isalpha() and e not in KNOWN_ESCAPES and e not in "xuc":
                hazards.append(f"escape \\{e} (JS: literal {e}; Rust/Python: error or other meaning)")
            elif e in "xu":
                hazards.append(f"escape \\{e} (check hex form matches in Rust)")
            elif e == "c":
                hazards.append("control escape \\c")
            elif e in "<>":
                hazards.append(f"escape \\{e} (Rust: word-boundary assertion, JS: literal)")
            elif e == "0":
                hazards.append("escape \\0 (JS: NUL; Rust: error)")
            elif not e.isascii():
                hazards.append(f"escape of non-ASCII {e!r} (Rust: error)")
            i += 2
            continue
        if in_class:
            if c == "]" and i > class_start:
                in_class = False
            elif c == "[":
                hazards.append("unescaped [ inside class (Rust: nested class)")
            elif p[i:i + 2] in ("&&", "--", "~~"):
                hazards.append(f"{p[i:i+2]} inside class (Rust: set operation)")
            i += 1
            continue
        if c == "[":
            in_class = True
            class_start = i + 1
            if p[i + 1:i + 2] == "^":
                class_start += 1
            if p[i + 1:i + 2] == "]" or p[i + 1:i + 3] == "^]":
                hazards.append("class starting with ] (JS: empty/negated-all class; Rust: literal ])")
        elif c == "{":
            if not re.match(r"\{\d+(,\d*)?\}", p[i:]):
                hazards.append("literal { (Rust: repetition syntax error)")
        elif c == "(" and p[i + 1:i + 2] == "?":
            nxt = p[i + 2:i + 3]
            if nxt == "P" or (nxt == "<" and p[i + 3:i + 4] not in ("=", "!")):
                hazards.append("named group (duplicate names break a joined alternation)")
            elif nxt not in (":", "=", "!", "<", ">"):
                hazards.append("inline flag group (?" + nxt + " (not JS syntax; check intent)")
        i += 1
    if in_class:
        hazards.append("unterminated class")
    return fancy, hazards

def normalise(p):
    """Rewrites JS-only syntax that has one obvious equivalent: inside a class, a `-` next to a
    shorthand class (`[\\w\\d-.]`) is a literal in JS but an invalid range in Rust and Python, so
    it is escaped. Returns (pattern, [notes])."""
    out, notes, i, in_class, start = [], [], 0, False, 0
    shorthand = lambda s: len(s) == 2 and s[0] == "\\" and s[1] in "dDwWsS"
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            out.append(p[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and i > start:
                in_class = False
            elif c == "-" and i > start and p[i + 1:i + 2] not in ("]", "") and (
                    shorthand(out[-1]) or shorthand(p[i + 1:i + 3])):
                out.append("\\-")
                notes.append(f"escaped '-' next to a shorthand class at {i}")
                i += 1
                continue
        elif c == "[":
            in_class, start = True, i + 1
            if p[i + 1:i + 2] == "^":
                start += 1
        out.append(c)
        i += 1
    return "".join(out), notes

normalised = {}
kept_n = []
for p in kept:
    q, notes = normalise(p)
    if notes:
        normalised[q] = (p, notes)
    if q not in kept_n:
        kept_n.append(q)
kept = kept_n

plain, fancy, hazard_list, fancy_why = [], [], [], {}
for p in kept:
    f, h = scan(p)
    if h:
        hazard_list.append((p, h))
    if f:
        fancy.append(p)
        fancy_why[p] = f
    else:
        plain.append(p)
# the patterns must at least compile as Python regexes (Python is the evaluation engine)
bad_py = []
for p in plain:
    try:
        re.compile(p, re.I)
    except re.error as e:
        bad_py.append((p, str(e)))
if hazard_list or bad_py:
    for p, h in hazard_list:
        print(f"HAZARD {p!r}: {'; '.join(h)}", file=sys.stderr)
    for p, e in bad_py:
        print(f"PYTHON-ERROR {p!r}: {e}", file=sys.stderr)
    sys.exit("stopping: rewrite or exclude the patterns above in shared/bots/data/exclude.txt")
plain.sort()
fancy.sort()

today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

def header(kind):
    lines = [
        f"# crm-bots bot User-Agent patterns, {kind}.",
        "# Generated by scripts/update-bot-list.sh; do not edit: add removals to exclude.txt and re-run.",
        "# Each line is one regex, searched case-insensitively and unanchored in the whole UA string;",
        "# a UA matching any line (of either file) is a bot.",
    ]
    for label, pkg, _ in sources:
        integ, lic = meta(pkg)
        lines.append(f"# source: {label} (npm) integrity {integ} licence {lic}")
    lines.append(f"# generated: {today}")
    lines.append(f"# counts: plain {len(plain)}, fancy {len(fancy)}, excluded {len(merged) - len(kept)}, "
                 f"exact duplicates merged {dupes}, normalised {len(normalised)}")
    for q, (p, notes) in sorted(normalised.items()):
        lines.append(f"# normalised: {p}  ->  {q}  (JS literal '-' next to a shorthand class)")
    return lines

def write(path, kind, pats):
    old = set()
    if os.path.exists(path):
        old = {l.rstrip("\n") for l in open(path, encoding="utf-8") if l.strip() and not l.startswith("#")}
    with open(path + ".part", "w", encoding="utf-8") as f:
        f.write("\n".join(header(kind) + pats) + "\n")
    os.replace(path + ".part", path)
    new = set(pats)
    print(f"{path}: {len(pats)} patterns (+{len(new - old)} -{len(old - new)} vs previous)")

write(os.path.join(data, "patterns.txt"),
      "plain dialect (Rust `regex` crate: no look-around, no backreferences)", plain)
write(os.path.join(data, "patterns-fancy.txt"),
      "fancy dialect (look-around or backreferences: needs `fancy-regex`)", fancy)
print(f"sources: isbot {len(isbot)}, crawler-user-agents {len(cua)}; empty {empty}, "
      f"exact duplicates merged {dupes}, excluded {len(merged) - len(kept)}")
for q, (p, notes) in sorted(normalised.items()):
    print(f"  normalised: {p}  ->  {q}  ({'; '.join(notes)})")
for p in fancy:
    print(f"  fancy ({', '.join(fancy_why[p])}): {p}")
for p in unused_ex:
    print(f"  note: exclude.txt entry matches no source pattern any more: {p}")
PY

[ "$corpora" = 1 ] || exit 0

# ---- corpora --------------------------------------------------------------------------------
npm_fetch uap-core "$UAP_CORE_VERSION"
npm_fetch user-agents "$USER_AGENTS_VERSION"
npm_fetch top-user-agents "$TOP_USER_AGENTS_VERSION"
cua_new_whl="$(pypi_fetch crawler-user-agents "$CUA_NEW_VERSION" "$CUA_NEW_WHEEL_SHA256" wheel)"
cd_sdist="$(pypi_fetch crawlerdetect "$CRAWLERDETECT_VERSION" "$CRAWLERDETECT_SDIST_SHA256" sdist)"
mkdir -p "$corp"

python3 - "$corp" "$tmp" "$cua_json" "$cua_new_whl" "$cd_sdist" "$LONGTAIL_STEP" \
  "$CUA_VERSION" "$CUA_NEW_VERSION" "$CRAWLERDETECT_VERSION" "$UAP_CORE_VERSION" \
  "$USER_AGENTS_VERSION" "$TOP_USER_AGENTS_VERSION" <<'PY'
import base64, gzip, hashlib, io, json, os, sys, tarfile, zipfile

(corp, tmp, cua_json, cua_new_whl, cd_sdist, step, cua_v, cua_new_v, cd_v, uap_v, ua_v,
 top_v) = sys.argv[1:13]
step = int(step)

def meta(pkg):
    return open(os.path.join(tmp, pkg + ".meta")).read().split("\n")[:2]

def file_ids(path):
    b = open(path, "rb").read()
    return (hashlib.sha256(b).hexdigest(),
            "sha512-" + base64.b64encode(hashlib.sha512(b).digest()).decode())

def npm_src(pkg, ver):
    integ, lic = meta(pkg)
    return f"# source: {pkg}@{ver} (npm) integrity {integ} licence {lic}"

def pypi_src(name, ver, path, lic):
    s256, s512 = file_ids(path)
    return (f"# source: {name}=={ver} (PyPI {os.path.basename(path)}) sha256 {s256} "
            f"integrity {s512} licence {lic}")

def clean(ua):
    return " ".join(ua.replace("\r", " ").replace("\n", " ").split("\t")).strip()

def write(name, header, lines):
    path = os.path.join(corp, name)
    old = set()
    if os.path.exists(path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            old = {l.rstrip("\n") for l in f if not l.startswith("#")}
    body = "\n".join(header + lines) + "\n"
    buf = io.BytesIO()
    # mtime 0 and no file name: identical input gives identical bytes
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        g.write(body.encode("utf-8"))
    open(path + ".part", "wb").write(buf.getvalue())
    os.replace(path + ".part", path)
    new = set(lines)
    print(f"{path}: {len(lines)} lines, {len(buf.getvalue())} bytes gz "
          f"(+{len(new - old)} -{len(old - new)} vs previous)")
    return len(buf.getvalue())

def dedupe(xs):
    seen, out = set(), []
    for x in xs:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out

total = 0
old_entries = json.load(open(cua_json))
old_patterns = {e["pattern"] for e in old_entries}
old_instances = dedupe(clean(i) for e in old_entries for i in e.get("instances", []))
old_set = set(old_instances)
total += write("bots-insample.txt.gz", [
    npm_src("crawler-user-agents", cua_v),
    "# selection: every `instances` entry of crawler-user-agents.json, in file order, deduplicated.",
    "# In-sample: the pattern list is built from this release; a regression check, not a recall estimate.",
], old_instances)

def licence_from_metadata(text):
    for key in ("License-Expression:", "License:"):
        for line in text.splitlines():
            if line.startswith(key) and line[len(key):].strip():
                return line[len(key):].strip()
    return "UNKNOWN"

with zipfile.ZipFile(cua_new_whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/crawler-user-agents.json"))
    new_entries = json.loads(z.read(name))
    pj = [n for n in z.namelist() if n.endswith("/package.json")]
    cua_new_lic = json.loads(z.read(pj[0])).get("license") if pj else None
    if not cua_new_lic:
        md = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        cua_new_lic = licence_from_metadata(z.read(md).decode("utf-8", "replace"))
new_lines = dedupe(clean(i) for e in new_entries if e["pattern"] not in old_patterns
                   for i in e.get("instances", []))
new_lines = [l for l in new_lines if l not in old_set]
n_new_pat = sum(1 for e in new_entries if e["pattern"] not in old_patterns)
total += write("bots-heldout.txt.gz", [
    pypi_src("crawler-user-agents", cua_new_v, cua_new_whl, cua_new_lic),
    f"# selection: time split. Instances of the {n_new_pat} entries of {cua_new_v} whose `pattern` is not a",
    f"# pattern of crawler-user-agents@{cua_v} (genuinely new crawlers), minus UAs that are {cua_v} instances.",
    "# Small by nature: only as many lines as crawlers were added between the two releases.",
], new_lines)

with tarfile.open(cd_sdist) as t:
    def member(suffix):
        m = next(m for m in t.getmembers() if m.name.endswith(suffix))
        return t.extractfile(m).read().decode("utf-8", "replace").splitlines()
    cd_lic = licence_from_metadata("\n".join(member("/PKG-INFO")))
    cd_bots = member("tests/fixtures/user_agent/crawlers.txt")
    cd_devices = member("tests/fixtures/user_agent/devices.txt")
cd_bot_lines = [l for l in dedupe(clean(l) for l in cd_bots) if l not in old_set]
total += write("bots-crawlerdetect.txt.gz", [
    pypi_src("crawlerdetect", cd_v, cd_sdist, cd_lic),
    "# selection: tests/fixtures/user_agent/crawlers.txt (CrawlerDetect's crawler fixtures), deduplicated,",
    f"# minus UAs that are crawler-user-agents@{cua_v} instances. Independent source (not a time split);",
    "# includes monitors, HTTP libraries and headless browsers.",
], cd_bot_lines)

def unquote(l):
    l = l.strip()
    if len(l) >= 2 and l[0] == l[-1] and l[0] in "\"'":
        l = l[1:-1]
    return l
dev = dedupe(clean(unquote(l)) for l in cd_devices)
sample = dev[::step]
total += write("browsers-longtail.txt.gz", [
    pypi_src("crawlerdetect", cd_v, cd_sdist, cd_lic),
    "# selection: tests/fixtures/user_agent/devices.txt (CrawlerDetect's non-crawler fixtures), outer quotes",
    f"# stripped, deduplicated ({len(dev)} UAs), then every {step}th line from the first (deterministic sample).",
    "# Unweighted long tail: old phones, in-app browsers, consoles, TVs; some are arguably not browsers.",
], sample)

uap_dir = os.path.join(tmp, "uap-core", "package")
uap_test = os.path.join(uap_dir, "tests", "test_ua.yaml")
if os.path.exists(uap_test):
    lines, ua = [], None
    for l in open(uap_test, encoding="utf-8"):
        s = l.strip()
        if s.startswith("- user_agent_string:"):
            ua = s.split(":", 1)[1].strip().strip("'\"")
        elif s.startswith("family:") and ua is not None:
            if s.split(":", 1)[1].strip().strip("'\"") == "Spider":
                lines.append(clean(ua))
            ua = None
    total += write("bots-uap.txt.gz", [
        npm_src("uap-core", uap_v),
        "# selection: tests/test_ua.yaml entries whose expected family is Spider, deduplicated.",
    ], dedupe(lines))
else:
    print(f"uap-core@{uap_v} ships no tests/test_ua.yaml: bots-uap.txt.gz not written")

ua_path = os.path.join(tmp, "user-agents", "package", "dist")
cands = [os.path.join(ua_path, f) for f in ("user-agents.json", "user-agents.json.gz")]
src = next(p for p in cands if os.path.exists(p))
raw = open(src, "rb").read()
if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
weights = {}
for e in json.loads(raw):
    ua = clean(e["userAgent"])
    if ua:
        weights[ua] = weights.get(ua, 0.0) + float(e["weight"])
ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
total += write("browsers.txt.gz", [
    npm_src("user-agents", ua_v),
    f"# selection: every entry of dist/{os.path.basename(src)}; duplicate UAs merged, weights summed;",
    "# sorted by weight descending. Line format: weight<TAB>UA. Weights are traffic shares (sum ~1).",
], [f"{w:.6e}\t{ua}" for ua, w in ranked])

top_dir = os.path.join(tmp, "top-user-agents", "package", "src")
top = dedupe(clean(u) for u in json.load(open(os.path.join(top_dir, "index.json"))))
for extra in ("desktop.json", "mobile.json"):
    p = os.path.join(top_dir, extra)
    if os.path.exists(p):
        top += [u for u in dedupe(clean(u) for u in json.load(open(p))) if u not in set(top)]
total += write("browsers-top.txt.gz", [
    npm_src("top-user-agents", top_v),
    "# selection: src/index.json in rank order, then any desktop.json/mobile.json UA not in it; unweighted.",
], top)
print(f"corpora total: {total} bytes gz")
PY
