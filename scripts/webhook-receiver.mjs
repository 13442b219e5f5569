// A webhook receiver on loopback: it records every POST to /webhooks/<name> (headers, body, time) and
// answers what it is told to, so tests (and npm start's inbox) can watch Mailroom's deliveries and make an
// endpoint misbehave the way real ones do (5xx, 410, 429 with Retry-After, slow, redirects).
//   POST /webhooks/<name>             a delivery: recorded, then answered by the next scripted answer (else 200)
//   PUT  /webhooks/<name>/script      JSON [{status, headers?, body?, delayMs?}, …]: the next answers, in order
//   GET  /webhooks/<name>/received    JSON list of what it received; ?count=N waits until N have come
//                                     (or timeoutMs, default 10 s, has passed: then what there is)
import { createServer } from "node:http";

/**
 * @typedef {{ status: number, headers?: Record<string, string>, body?: string, delayMs?: number }} ScriptedAnswer
 * @typedef {{ headers: Record<string, string | string[] | undefined>, body: string, at: string, answered: number }} Delivery
 */

/** @param {{ host?: string, port?: number }} [options] */
export async function startWebhookReceiver({ host = "127.0.0.1", port = 0 } = {}) {
  /** @type {Map<string, Delivery[]>} */
  const received = new Map();
  /** @type {Map<string, ScriptedAnswer[]>} */
  const scripts = new Map();
  /** @type {Set<() => void>} */
  const waiting = new Set();
  const deliveriesOf = (/** @type {string} */ name) => received.get(name) ?? (received.set(name, []), received.get(name));

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const match = /^\/webhooks\/([\w.-]{1,100})(\/script|\/received)?$/.exec(url.pathname);
    if (!match) return void res.writeHead(404).end();
    const [, name, action] = /** @type {[string, string, string | undefined]} */ (match);
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    if (action === "/script" && req.method === "PUT") {
      scripts.set(name, JSON.parse(body));
      return void res.writeHead(204).end();
    }
    if (action === "/received" && req.method === "GET") {
      const count = Number(url.searchParams.get("count") ?? 0);
      const deadline = Date.now() + Number(url.searchParams.get("timeoutMs") ?? 10_000);
      while (deliveriesOf(name).length < count && Date.now() < deadline) {
        await new Promise((resolve) => {
          const wake = () => (waiting.delete(wake), clearTimeout(timer), resolve(undefined));
          const timer = setTimeout(wake, deadline - Date.now());
          waiting.add(wake);
        });
      }
      return void res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(deliveriesOf(name)));
    }
    if (action || req.method !== "POST") return void res.writeHead(405).end();
    const answer = scripts.get(name)?.shift() ?? { status: 200, body: "ok" };
    deliveriesOf(name).push({ headers: req.headers, body, at: new Date().toISOString(), answered: answer.status });
    for (const wake of [...waiting]) wake();
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
    if (res.destroyed) return;
    res.writeHead(answer.status, answer.headers ?? {}).end(answer.body ?? "");
  });
  await new Promise((resolve) => server.listen(port, host, () => resolve(undefined)));
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    port: address.port,
    /** @param {string} name */
    received: (name) => deliveriesOf(name),
    close: () =>
      new Promise((resolve) => {
        for (const wake of [...waiting]) wake();
        server.closeAllConnections();
        server.close(() => resolve(undefined));
      }),
  };
}
