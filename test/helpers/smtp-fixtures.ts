// What the global setup starts and the tests reach: real SMTP servers on loopback, each with a JSON
// API (httpPort) listing the mail it received and the AUTH attempts it saw.

export const SMTP_USER = "mailroom";
export const SMTP_PASS = "correct horse battery staple";

export interface InboxPorts {
  smtpPort: number;
  httpPort: number;
}

export interface SmtpFixtures {
  /** A loopback port nothing listens on (the OS gave it, and it was closed again): connections are refused. */
  closedPort: number;
  plain: InboxPorts;
  starttls: InboxPorts;
  tls: InboxPorts;
  noStarttls: InboxPorts;
  /** Self-signed certificates, implicit TLS and STARTTLS. */
  untrustedTls: InboxPorts;
  untrustedStarttls: InboxPorts;
  /** The trusted certificate (127.0.0.1, localhost), served at 127.0.0.2. */
  wrongHostTls: InboxPorts;
  wrongHostStarttls: InboxPorts;
  /** controlPort is the tests' control server; GET /email-service/sent/<message id> there answers the .eml the local send_email binding wrote. */
  drop: { smtpPort: number; controlPort: number };
  silent: { smtpPort: number };
  /** Shares drop.controlPort: GET /injection/commands lists what it received. */
  injection: { smtpPort: number };
  trickle: { smtpPort: number };
  /** GET /data-policy/connections (and …/reset) on drop.controlPort: open connections and the peak. */
  dataPolicy: { smtpPort: number };
  flood: { smtpPort: number };
  /** Sends a stray "250" right behind its "354" to DATA, as if it answered the final dot early. */
  stray: { smtpPort: number };
  /** Greets with 421 and hangs up, as a relay over its connection limit does. */
  busy: { smtpPort: number };
  /** Counts connections at once and MAIL FROMs per second (pacing-relay.ts); GET /pacing/stats, /pacing/reset and
   * /pacing/throttle/<n> (the next n MAIL FROMs get 454 Throttling failure) on drop.controlPort. */
  pacing: { smtpPort: number };
  /** The default relay of the workerd tests: the plain inbox behind a switchable gate (relay-gate.ts);
   * GET /gate/open|chaos|tempfail|down|hold on controlPort switches it and answers its mode and connection counts. */
  gate: { smtpPort: number; controlPort: number };
  /** The inbox behind the gate's "chaos" mode: it fails about a third of all attempts at random. */
  chaos: InboxPorts;
  /** Relays that only a pipelining (or only a lock-step) client gets through (pipelining-relays.ts); what
   * each received: GET /pipelining-only/received or /strict-lockstep/received on drop.controlPort. */
  pipeliningOnly: { smtpPort: number };
  strictLockstep: { smtpPort: number };
  /** The webhook receiver (scripts/webhook-receiver.mjs): endpoints at http://127.0.0.1:<port>/webhooks/<name>. */
  webhookReceiver: { port: number };
}

/** mailauth's verdict on one DKIM-Signature (POST /dkim/verify on drop.controlPort: { message, records }). */
export interface DkimVerdict {
  /** "pass", "fail", "neutral", … */
  result: string;
  comment?: string;
  domain?: string;
  selector?: string;
  algorithm?: string;
  /** h=, as the verifier read it. */
  signedHeaders?: string;
}

declare module "vitest" {
  interface ProvidedContext {
    smtp: SmtpFixtures;
  }
}
