// Types for inbox.mjs, so the TypeScript tests can start inboxes.
export interface InboxMessage {
  id: string;
  receivedAt: string;
  secure: boolean;
  authenticatedAs: string | null;
  envelope: {
    from: string;
    to: string[];
    /** What the client asked for (RFC 3461), when this inbox offers DSN; null when it sent no DSN parameter. */
    dsn: { ret: string | null; envid: string | null; recipients: { notify: string[] | null; orcpt: string | null }[] } | null;
  };
  messageId: string | null;
  from: string;
  to: string;
  cc: string;
  /** The attachments as a mail client reads them, their content as a SHA-256 (hex). */
  attachments: { filename: string | null; contentType: string; disposition: string | null; contentId: string | null; size: number; sha256: string }[];
  /** The To and Cc headers as a mail client reads them: one entry per mailbox. */
  toMailboxes: { name: string; address: string }[];
  ccMailboxes: { name: string; address: string }[];
  subject: string;
  text: string;
  html: string;
  headerNames: string[];
  raw: string;
}

export interface InboxStats {
  connections: number;
  authAttempts: { method: string; username: string; secure: boolean; ok: boolean }[];
  mailFrom: number;
  /** Steps failed on purpose (InboxOptions.chaos). */
  chaosFailures: number;
}

/** A webhook delivery to the inbox's /webhooks. */
export interface InboxWebhookDelivery {
  receivedAt: string;
  webhookId: string;
  type: string;
  payload: unknown;
  /** Whether its signature verifies with a secret of a webhook pointing here; null: no secret to check with. */
  verified: boolean | null;
}

export interface Inbox {
  smtpPort: number;
  httpPort: number | null;
  messages: InboxMessage[];
  stats: InboxStats;
  webhookDeliveries: InboxWebhookDelivery[];
  close(): Promise<void>;
}

export interface InboxOptions {
  host?: string;
  smtpPort?: number;
  httpPort?: number | null;
  security?: "none" | "starttls" | "tls";
  tls?: { key: string | Buffer; cert: string | Buffer };
  users?: Record<string, string>;
  offerStartTls?: boolean;
  recipientPolicy?: boolean;
  /** Fail about `rate` of each step at random (421 on connect, 451 to MAIL, RCPT, end of DATA), reproducibly. */
  chaos?: { rate: number; seed?: number };
  /** Advertise DSN (RFC 3461) and record what the client asked for; default true. */
  offerDsn?: boolean;
  /**
   * Behave like a relay that reports later: for bounce-*@ a DSN (failed, 5.1.1), for complain-*@ an ARF
   * complaint, POSTed `delayMs` (500) after accepting to `url`'s /cdn-cgi/handler/email for the envelope sender.
   */
  reportTo?: { url?: string; delayMs?: number };
  /** The signing secrets of the webhooks pointing at this inbox's /webhooks (npm start reads them from the API). */
  webhookSecrets?: () => Promise<string[]>;
}

export function startInbox(options?: InboxOptions): Promise<Inbox>;
