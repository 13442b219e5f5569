// Which URLs a webhook may point at. Mailroom POSTs to them from inside the operator's account, so an
// endpoint must not be a way into anything private: https with a public host name only, never an IP
// literal of a private, loopback, link-local, shared (CGNAT), multicast, reserved or unspecified range
// (IPv4, or IPv6 outside global unicast and its special blocks; 6to4 judged by its IPv4), never localhost
// or a name kept for local networks (.local, .internal, .home.arpa…), never user info in the URL. ENVIRONMENT=development
// also allows http and loopback, so a local receiver (npm start's, the tests') can be used.
// What a public name resolves to is not checked here (the runtime's fetch does not reach private
// networks from Cloudflare's edge); README says so.

export const MAX_ENDPOINT_LENGTH = 2048;

export type EndpointCheck = { ok: true; url: string } | { ok: false; message: string };

/** IPv4 ranges no endpoint may be in, as [first address, prefix length]. */
const BLOCKED_V4: [number, number][] = [
  [0x00000000, 8], // "this network", 0.0.0.0
  [0x0a000000, 8], // private
  [0x64400000, 10], // shared address space (CGNAT)
  [0x7f000000, 8], // loopback
  [0xa9fe0000, 16], // link-local
  [0xac100000, 12], // private
  [0xc0000000, 24], // IETF protocol assignments
  [0xc0000200, 24], // documentation
  [0xc0586300, 24], // 6to4 relay anycast (deprecated)
  [0xc0a80000, 16], // private
  [0xc6120000, 15], // benchmarking
  [0xc6336400, 24], // documentation
  [0xcb007100, 24], // documentation
  [0xe0000000, 4], // multicast
  [0xf0000000, 4], // reserved, broadcast
];

function parseV4(host: string): number | undefined {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

const inV4Range = (ip: number, [prefix, bits]: [number, number]) => Math.floor(ip / 2 ** (32 - bits)) === Math.floor(prefix / 2 ** (32 - bits));
const isBlockedV4 = (ip: number) => BLOCKED_V4.some((range) => inV4Range(ip, range));
const isLoopbackV4 = (ip: number) => inV4Range(ip, [0x7f000000, 8]);

/** An IPv6 literal (as the URL parser normalises it, without brackets) as eight 16-bit groups. */
function parseV6(host: string): number[] | undefined {
  if (!host.includes(":")) return undefined;
  let text = host;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    // A dotted IPv4 tail (::ffff:127.0.0.1) is the last two groups.
    const ip = parseV4(text.slice(lastColon + 1));
    if (ip === undefined) return undefined;
    tail.push(Math.floor(ip / 65536), ip % 65536);
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const fill = 8 - tail.length - left.length - right.length;
  if (rest === undefined ? fill !== 0 : fill < 0) return undefined;
  const all = [...left, ...Array<number>(rest === undefined ? 0 : fill).fill(0), ...right, ...tail];
  return all.length === 8 && all.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? all : undefined;
}

/**
 * Whether an IPv6 address is loopback (::1, or IPv4 loopback in the mapped form), and whether it is blocked:
 * everything outside global unicast (2000::/3) is, and inside it the special-purpose blocks (Teredo and the
 * rest of 2001::/23, documentation 2001:db8::/32 and 3fff::/20); 6to4 (2002::/16) is judged by the IPv4
 * address it carries.
 */
function judgeV6(g: number[]): { blocked: boolean; loopback: boolean } {
  const mappedV4 = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff ? g[6]! * 65536 + g[7]! : undefined;
  const loopback = (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) || (mappedV4 !== undefined && isLoopbackV4(mappedV4));
  const first = g[0]!;
  if ((first & 0xe000) !== 0x2000) return { blocked: true, loopback };
  if (first === 0x2002) return { blocked: isBlockedV4(g[1]! * 65536 + g[2]!), loopback: false };
  const special = (first === 0x2001 && g[1]! < 0x0200) || (first === 0x2001 && g[1] === 0x0db8) || (first === 0x3fff && g[1]! < 0x1000);
  return { blocked: special, loopback: false };
}

/** Names that never lead to a public host: localhost and the names kept for local networks. */
const LOCAL_SUFFIXES = ["localhost", "local", "internal", "home.arpa", "lan", "intranet"];
const isLocalName = (host: string) => LOCAL_SUFFIXES.some((suffix) => host === suffix || host.endsWith(`.${suffix}`));

/** Whether `url` may be a webhook's endpoint; `development` also allows http and loopback. */
export function checkEndpoint(raw: string, { development }: { development: boolean }): EndpointCheck {
  if (raw.length > MAX_ENDPOINT_LENGTH) return { ok: false, message: `must be at most ${MAX_ENDPOINT_LENGTH} characters` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: "must be an absolute URL" };
  }
  const httpsOnly = development ? "must be an https:// (or, in development, http://) URL" : "must be an https:// URL";
  if (url.protocol !== "https:" && !(development && url.protocol === "http:")) return { ok: false, message: httpsOnly };
  if (url.username || url.password) return { ok: false, message: "must not carry a user name or password" };
  let host = url.hostname.toLowerCase();
  while (host.endsWith(".")) host = host.slice(0, -1);
  const bracketed = host.startsWith("[") ? host.slice(1, -1) : undefined;
  if (bracketed === undefined && host.split(".").some((label) => label === "")) return { ok: false, message: "has an empty label in its host name" };
  const v4 = parseV4(host);
  const v6 = bracketed === undefined ? undefined : parseV6(bracketed);
  if (bracketed !== undefined && !v6) return { ok: false, message: "has an IPv6 address that cannot be read" };
  const localName = v4 === undefined && !v6 && isLocalName(host);
  const loopbackName = host === "localhost" || host.endsWith(".localhost");
  const verdict = v4 !== undefined ? { blocked: isBlockedV4(v4), loopback: isLoopbackV4(v4) } : v6 ? judgeV6(v6) : { blocked: localName, loopback: loopbackName };
  if (verdict.blocked && !(development && verdict.loopback)) {
    return { ok: false, message: "must be at a public host: private, loopback, link-local, shared, multicast and reserved addresses, localhost and local names are refused" };
  }
  if (v4 === undefined && !v6 && !localName && !host.includes(".")) return { ok: false, message: "must be at a public host name (with a dot)" };
  return { ok: true, url: url.href };
}
