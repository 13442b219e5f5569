// A development inbox: an SMTP server on loopback that keeps every mail it receives, and a small web
// page listing them and rendering each one's HTML and text. `npm start` delivers into it; the tests
// start several (plain, STARTTLS, implicit TLS, AUTH) and read what arrived through its JSON API.
import { createServer as createHttpServer } from "node:http";
import { createHash, randomUUID } from "node:crypto";
import { simpleParser } from "mailparser";
import { SMTPServer } from "smtp-server";

/**
 * @typedef {object} InboxOptions
 * @property {string} [host] address to listen on (loopback by default)
 * @property {number} [smtpPort] 0 lets the OS choose
 * @property {number} [httpPort] 0 lets the OS choose; null for no web page
 * @property {"none" | "starttls" | "tls"} [security]
 * @property {{key: string | Buffer, cert: string | Buffer}} [tls] certificate for starttls/tls
 * @property {Record<string, string>} [users] when set, AUTH with one of these is required
 * @property {boolean} [offerStartTls] advertise STARTTLS (default: when security is starttls)
 * @property {boolean} [recipientPolicy] answer RCPT for reject-*@ with 550, tempfail-*@ with 451,
 *   toomany-*@ with 552 (too many recipients, which RFC 5321 says to treat as temporary), and busy-*@
 *   with 452 the first time and 250 after that
 * @property {{ rate: number, seed?: number }} [chaos] a relay that fails about `rate` of each step at
 *   random, reproducibly from `seed`: 421 on connect, 451 to MAIL FROM, to RCPT TO or to the end of DATA
 *   (that mail is then not kept, as a real relay would not deliver it)
 * @property {boolean} [offerDsn] advertise DSN (RFC 3461) and record what the client asked for (default: true)
 * @property {{ url?: string, delayMs?: number }} [reportTo] behave like a relay that reports later: a while
 *   after accepting mail for bounce-*@ (a DSN: failed, 5.1.1) or complain-*@ (an ARF complaint), POST the
 *   report to `url`'s /cdn-cgi/handler/email (wrangler dev's local Email Routing entry) for the envelope sender
 * @property {() => Promise<string[]>} [webhookSecrets] the signing secrets of the webhooks pointing at
 *   this inbox's /webhooks, to check each delivery's signature with (npm start reads them from the API)
 */

/** A small seeded generator (mulberry32), so a chaos run fails the same steps each time. */
function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {InboxOptions} options */
export async function startInbox(options = {}) {
  const { host = "127.0.0.1", smtpPort = 0, httpPort = 0, security = "none", tls, users, recipientPolicy = true, chaos, offerDsn = true } = options;
  const offerStartTls = options.offerStartTls ?? security === "starttls";
  const messages = [];
  const busyOnce = new Set();
  const stats = { connections: 0, authAttempts: [], mailFrom: 0, chaosFailures: 0 };
  /** Webhook deliveries to POST /webhooks on the web port. */
  const deliveries = [];
  const random = chaos ? seededRandom(chaos.seed ?? 1) : undefined;
  /** With chaos, now and then an error with this code instead of going on. */
  const chaosError = (responseCode, text) => {
    if (!random || random() >= chaos.rate) return undefined;
    stats.chaosFailures += 1;
    return Object.assign(new Error(text), { responseCode });
  };
  let nextId = 1;

  const smtp = new SMTPServer({
    secure: security === "tls",
    ...(tls ?? {}),
    hideSTARTTLS: !offerStartTls,
    authOptional: !users,
    allowInsecureAuth: security === "none",
    authMethods: ["PLAIN", "LOGIN"],
    hideDSN: !offerDsn,
    size: 25 * 1024 * 1024,
    logger: false,
    disableReverseLookup: true,
    onConnect(_session, callback) {
      stats.connections += 1;
      callback(chaosError(421, "4.3.2 Chaos: service not available, closing channel"));
    },
    onAuth(auth, session, callback) {
      const ok = Boolean(users) && users[auth.username] === auth.password;
      stats.authAttempts.push({ method: auth.method, username: auth.username, secure: Boolean(session.secure), ok });
      if (!ok) return callback(Object.assign(new Error("Authentication credentials invalid"), { responseCode: 535 }));
      callback(null, { user: auth.username });
    },
    onMailFrom(_address, _session, callback) {
      stats.mailFrom += 1;
      callback(chaosError(451, "4.3.0 Chaos: temporary failure, try again"));
    },
    onRcptTo(address, _session, callback) {
      const local = address.address.split("@")[0] ?? "";
      if (recipientPolicy && local.startsWith("reject-")) {
        return callback(Object.assign(new Error("5.1.1 Recipient address rejected: user unknown"), { responseCode: 550 }));
      }
      if (recipientPolicy && local.startsWith("busy-") && !busyOnce.has(address.address)) {
        busyOnce.add(address.address);
        return callback(Object.assign(new Error("4.2.2 Mailbox busy, try again later"), { responseCode: 452 }));
      }
      if (recipientPolicy && local.startsWith("toomany-")) {
        return callback(Object.assign(new Error("5.5.3 Too many recipients"), { responseCode: 552 }));
      }
      if (recipientPolicy && local.startsWith("tempfail-")) {
        return callback(Object.assign(new Error("4.2.1 Mailbox temporarily unavailable, try again later"), { responseCode: 451 }));
      }
      callback(chaosError(451, "4.2.0 Chaos: recipient temporarily unavailable"));
    },
    onData(stream, session, callback) {
      const chunks = [];
      stream.on("data", (chunk) => chunks.push(chunk));
      stream.on("end", async () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const refused = chaosError(451, "4.3.0 Chaos: message not accepted, try again");
        if (refused) return callback(refused);
        try {
          const parsed = await simpleParser(raw);
          messages.push({
            id: String(nextId++),
            receivedAt: new Date().toISOString(),
            secure: Boolean(session.secure),
            authenticatedAs: session.user ?? null,
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
              to: session.envelope.rcptTo.map((r) => r.address),
              // What the client asked for (RFC 3461), when this inbox offers DSN and the client used it.
              dsn: session.envelope.dsn
                ? { ret: session.envelope.dsn.ret ?? null, envid: session.envelope.dsn.envid ?? null, recipients: session.envelope.rcptTo.map((r) => ({ notify: r.dsn?.notify ?? null, orcpt: r.dsn?.orcpt ?? null })) }
                : null,
            },
            messageId: parsed.messageId ?? null,
            from: parsed.from?.text ?? "",
            to: parsed.to ? [].concat(parsed.to).map((a) => a.text).join(", ") : "",
            cc: parsed.cc ? [].concat(parsed.cc).map((a) => a.text).join(", ") : "",
            attachments: parsed.attachments.map((a) => ({
              filename: a.filename ?? null,
              contentType: a.contentType,
              disposition: a.contentDisposition ?? null,
              contentId: a.cid ?? null,
              size: a.size,
              sha256: createHash("sha256").update(a.content).digest("hex"),
            })),
            toMailboxes: mailboxesOf(parsed.to),
            ccMailboxes: mailboxesOf(parsed.cc),
            subject: parsed.subject ?? "",
            text: parsed.text ?? "",
            html: typeof parsed.html === "string" ? parsed.html : "",
            headerNames: [...parsed.headers.keys()],
            raw,
          });
          // (Read before the callback: the session's envelope is reset for the next transaction then.)
          const envelope = { mailFrom: session.envelope.mailFrom, rcptTo: [...session.envelope.rcptTo], dsn: session.envelope.dsn };
          callback(null, "Message queued as " + (nextId - 1));
          if (options.reportTo) sendLaterReports(options.reportTo, envelope, parsed.messageId ?? null);
        } catch (error) {
          callback(error);
        }
      });
    },
  });
  smtp.on("error", () => {}); // a client that drops mid-session is not the inbox's problem

  await new Promise((resolve, reject) => {
    smtp.server.once("error", reject);
    smtp.listen(smtpPort, host, () => resolve(undefined));
  });
  const actualSmtpPort = smtp.server.address().port;

  let http;
  if (httpPort !== null) {
    http = createHttpServer((req, res) => {
      if (req.url === "/webhooks" || req.url === "/api/webhooks") return serveWebhooks(req, res, deliveries, options.webhookSecrets);
      serveInbox(req, res, messages, stats, deliveries);
    });
    await new Promise((resolve, reject) => {
      http.once("error", reject);
      http.listen(httpPort, host, () => resolve(undefined));
    });
  }

  return {
    smtpPort: actualSmtpPort,
    httpPort: http ? http.address().port : null,
    messages,
    stats,
    webhookDeliveries: deliveries,
    async close() {
      await new Promise((resolve) => smtp.close(() => resolve(undefined)));
      if (http) {
        http.closeAllConnections();
        await new Promise((resolve) => http.close(() => resolve(undefined)));
      }
    },
  };
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const PAGE_STYLE = `body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd}
a{color:#0645ad}pre{white-space:pre-wrap;background:#f6f6f6;padding:1rem}iframe{width:100%;height:28rem;border:1px solid #ddd}
dl{display:grid;grid-template-columns:8rem 1fr;gap:.2rem 1rem}dt{color:#666}`;

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${PAGE_STYLE}</style></head><body>${body}</body></html>`;
}

/**
 * For each recipient of an accepted mail whose local part starts bounce- or complain-, the report a relay
 * would send back later to the envelope sender, POSTed to wrangler dev's local Email Routing entry.
 */
function sendLaterReports(reportTo, envelope, messageId) {
  const returnPath = envelope.mailFrom ? envelope.mailFrom.address : "";
  if (!returnPath || !reportTo.url) return;
  const envid = envelope.dsn?.envid ?? null;
  for (const rcpt of envelope.rcptTo) {
    const local = rcpt.address.split("@")[0].toLowerCase();
    const report = local.startsWith("bounce-") ? laterDsn(returnPath, rcpt.address, envid, messageId) : local.startsWith("complain-") ? laterComplaint(returnPath, rcpt.address, messageId) : undefined;
    if (!report) continue;
    setTimeout(() => {
      const url = `${reportTo.url}/cdn-cgi/handler/email?${new URLSearchParams({ from: "MAILER-DAEMON@inbox.mailroom.dev.test", to: returnPath })}`;
      // Like a relay, it does not retry; a refusal is worth a line, as a relay's log would have it.
      fetch(url, { method: "POST", body: report })
        .then(async (res) => res.ok || console.error(`inbox: the report to ${returnPath} was refused: ${res.status} ${(await res.text()).slice(0, 200)}`))
        .catch((error) => console.error(`inbox: the report to ${returnPath} could not be sent: ${error}`));
    }, reportTo.delayMs ?? 500);
  }
}

const crlf = (text) => text.replace(/\r?\n/g, "\r\n");

function laterDsn(returnPath, recipient, envid, messageId) {
  return crlf(`From: MAILER-DAEMON@inbox.mailroom.dev.test (Mail Delivery System)
To: ${returnPath}
Subject: Undelivered Mail Returned to Sender
Date: ${new Date().toUTCString()}
Message-ID: <${randomUUID()}@inbox.mailroom.dev.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="inbox-dsn"

--inbox-dsn
Content-Type: text/plain; charset=us-ascii

The development inbox accepted this mail for ${recipient}, then could not deliver it (as a relay whose
downstream server refuses it would report).

--inbox-dsn
Content-Type: message/delivery-status

Reporting-MTA: dns; inbox.mailroom.dev.test
${envid ? `Original-Envelope-Id: ${envid}\n` : ""}
Final-Recipient: rfc822; ${recipient}
Original-Recipient: rfc822;${recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <${recipient}>: Recipient address rejected: User unknown

--inbox-dsn
Content-Type: text/rfc822-headers

Message-ID: ${messageId ?? "<unknown@inbox.mailroom.dev.test>"}

--inbox-dsn--
`);
}

function laterComplaint(returnPath, recipient, messageId) {
  return crlf(`From: feedback@inbox.mailroom.dev.test
To: ${returnPath}
Subject: Complaint about a message
Date: ${new Date().toUTCString()}
Message-ID: <${randomUUID()}@inbox.mailroom.dev.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="inbox-arf"

--inbox-arf
Content-Type: text/plain; charset=us-ascii

A recipient marked this message as spam (the development inbox plays a mailbox provider's feedback loop).

--inbox-arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Mailroom-Dev-Inbox/1
Version: 1
Original-Mail-From: <${returnPath}>
Original-Rcpt-To: <${recipient}>

--inbox-arf
Content-Type: text/rfc822-headers

Message-ID: ${messageId ?? "<unknown@inbox.mailroom.dev.test>"}

--inbox-arf--
`);
}

/** The most webhook deliveries kept, and the largest body read. */
const MAX_DELIVERIES = 500;
const MAX_DELIVERY_BYTES = 1024 * 1024;

/**
 * The inbox's webhook receiver: POST /webhooks records a delivery (its type, whether its signature verifies
 * with a signing secret of a webhook that points here, its payload) and answers 200; GET /webhooks shows
 * them, GET /api/webhooks lists them as JSON.
 */
async function serveWebhooks(req, res, deliveries, webhookSecrets) {
  if (req.method === "POST" && req.url === "/webhooks") {
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > MAX_DELIVERY_BYTES) return void res.writeHead(413).end();
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks).toString("utf8");
    deliveries.push({ receivedAt: new Date().toISOString(), webhookId: String(req.headers["webhook-id"] ?? ""), ...(await judgeDelivery(body, req.headers, webhookSecrets)) });
    if (deliveries.length > MAX_DELIVERIES) deliveries.shift();
    return void res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
  }
  if (req.method === "GET" && req.url === "/api/webhooks") return void res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(deliveries));
  if (req.method !== "GET") return void res.writeHead(405).end();
  const verdict = { true: "verifies", false: "does NOT verify", null: "not checked (npm start knows no key to read the secret with)" };
  const rows = deliveries
    .slice()
    .reverse()
    .map((d) => `<tr><td>${escapeHtml(d.receivedAt)}</td><td>${escapeHtml(d.type)}</td><td>${escapeHtml(d.payload?.data?.email_id ?? "")}</td><td>${verdict[String(d.verified)]}</td><td><pre>${escapeHtml(JSON.stringify(d.payload ?? d.body, null, 2))}</pre></td></tr>`)
    .join("");
  const table = deliveries.length
    ? `<table><thead><tr><th>Received</th><th>Type</th><th>Email</th><th>Signature</th><th>Payload</th></tr></thead><tbody>${rows}</tbody></table>`
    : "<p>No webhook delivery yet. Register this receiver with the curl command <code>npm start</code> printed, then send a mail.</p>";
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
  res.end(page("Webhook deliveries", `<p><a href="/">← inbox</a></p><h1>Webhook deliveries (${deliveries.length})</h1>${table}`));
}

/** A delivery's type and payload, and whether its signature verifies (null: no secret to check it with). */
async function judgeDelivery(body, headers, webhookSecrets) {
  let payload;
  try {
    payload = JSON.parse(body);
  } catch {
    return { type: "(not JSON)", payload: undefined, body, verified: false };
  }
  const secrets = webhookSecrets ? await webhookSecrets().catch(() => []) : [];
  if (secrets.length === 0) return { type: String(payload?.type), payload, verified: null };
  const { Webhook } = await import("standardwebhooks");
  const verifies = (secret) => {
    try {
      new Webhook(secret).verify(body, headers);
      return true;
    } catch {
      return false;
    }
  };
  return { type: String(payload?.type), payload, verified: secrets.some(verifies) };
}

function serveInbox(req, res, messages, stats, deliveries) {
  const url = new URL(req.url ?? "/", "http://inbox.local");
  const send = (status, type, body, headers = {}) => {
    res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store", ...headers });
    res.end(body);
  };
  const json = (status, value) => send(status, "application/json", JSON.stringify(value));
  const detail = /^\/messages\/(\d+)(\/html)?$/.exec(url.pathname);

  if (req.method === "GET" && url.pathname === "/api/messages") {
    const to = url.searchParams.get("to");
    return json(200, to ? messages.filter((m) => m.envelope.to.includes(to)) : messages);
  }
  if (req.method === "GET" && url.pathname === "/api/stats") return json(200, stats);
  if (req.method === "DELETE" && url.pathname === "/api/messages") {
    messages.length = 0;
    return json(200, { deleted: true });
  }
  if (req.method === "GET" && url.pathname === "/") {
    const rows = messages
      .slice()
      .reverse()
      .map((m) => `<tr><td>${escapeHtml(m.receivedAt)}</td><td>${escapeHtml(m.from)}</td><td>${escapeHtml(m.envelope.to.join(", "))}</td><td><a href="/messages/${m.id}">${escapeHtml(m.subject || "(no subject)")}</a></td></tr>`)
      .join("");
    const body = messages.length
      ? `<table><thead><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr></thead><tbody>${rows}</tbody></table>`
      : "<p>No mail yet. Send one with the curl command <code>npm start</code> printed.</p>";
    const hooks = `<p><a href="/webhooks">Webhook deliveries (${deliveries.length})</a></p>`;
    return send(200, "text/html; charset=utf-8", page("Mailroom inbox", `<h1>Mailroom inbox (${messages.length})</h1>${hooks}${body}`));
  }
  const message = detail ? messages.find((m) => m.id === detail[1]) : undefined;
  if (req.method === "GET" && message && detail?.[2]) {
    // The mail's own HTML, shown in a sandboxed frame: no scripts, no access to this page.
    return send(200, "text/html; charset=utf-8", message.html, { "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'" });
  }
  if (req.method === "GET" && message) {
    const html = message.html ? `<h2>HTML</h2><iframe sandbox src="/messages/${message.id}/html" title="HTML body"></iframe>` : "";
    const text = message.text ? `<h2>Text</h2><pre>${escapeHtml(message.text)}</pre>` : "";
    const meta = [
      ["From", message.from],
      ["To", message.to],
      ["Cc", message.cc],
      ["Envelope", `${message.envelope.from} → ${message.envelope.to.join(", ")}`],
      ["Subject", message.subject],
      ["Message-ID", message.messageId],
      ["Received", message.receivedAt],
    ]
      .filter(([, v]) => v)
      .map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`)
      .join("");
    return send(200, "text/html; charset=utf-8", page(message.subject, `<p><a href="/">← inbox</a></p><h1>${escapeHtml(message.subject)}</h1><dl>${meta}</dl>${html}${text}<h2>Source</h2><pre>${escapeHtml(message.raw)}</pre>`));
  }
  return json(404, { error: "not found" });
}

/** mailparser's address objects as plain mailboxes (groups flattened). */
function mailboxesOf(field) {
  if (!field) return [];
  return [].concat(field).flatMap((a) => a.value).flatMap((m) => (m.group ? m.group : [m])).map((m) => ({ name: m.name ?? "", address: m.address ?? "" }));
}
