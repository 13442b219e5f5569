// The events Mailroom pushes to webhooks, in Resend's vocabulary and payload shape
// (`node_modules/resend/dist/index.d.mts`, `WebhookEventPayload`): which types exist, what a history event
// becomes, and the payload built from the message and that event. The payload is built from fields that
// never change once stored (addresses, subject, tags, the history row), so every retry and replay of an
// event sends the same bytes.
import { formatMailbox, type Mailbox } from "./address";

/** The types Mailroom sends, in the order a message's life goes; email.canceled is Mailroom's own. */
export const WEBHOOK_EVENT_TYPES = [
  "email.scheduled",
  "email.sent",
  "email.delivered",
  "email.delivery_delayed",
  "email.bounced",
  "email.complained",
  "email.suppressed",
  "email.failed",
  "email.canceled",
  "suppression.added",
  "suppression.removed",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];
/** The types about a message (made from its history); the others carry the payload they were made with. */
export type EmailEventType = Extract<WebhookEventType, `email.${string}`>;

/** What Resend's emails.get answers as `last_event`, for a message's latest history event. */
export type LastEvent = "queued" | "scheduled" | "sent" | "delivered" | "delivery_delayed" | "bounced" | "complained" | "suppressed" | "failed" | "canceled";

/**
 * `last_event` from a message's latest history event (interruptions left out) and its status: accepted or
 * rescheduled is "scheduled" while it waits for its time, else "queued".
 */
export function lastEventOf(type: string | null, status: string): LastEvent {
  switch (type) {
    case "sent":
    case "delivered":
    case "bounced":
    case "complained":
    case "suppressed":
    case "failed":
    case "canceled":
      return type;
    case "deferred":
      return "delivery_delayed";
    default:
      return status === "scheduled" ? "scheduled" : "queued";
  }
}

export interface EventMessage {
  id: string;
  messageId: string;
  from: Mailbox;
  to: Mailbox[];
  subject: string;
  tags: { name: string; value: string }[];
  createdAt: string;
}

export interface ReportedEvent {
  at: string;
  attempt: number | null;
  smtpCode: number | null;
  detail: string | null;
  recipient: string | null;
  enhancedCode: string | null;
}

/**
 * Resend's bounce subType for a permanent refusal, told from its RFC 3463 status (the names Amazon SES
 * and Resend use): the address does not exist, the mailbox is full, the message is too large, refused for
 * its content or by policy; anything else is "General".
 */
export function bounceSubType(enhancedCode: string | null, smtpCode: number | null = null): string {
  if (!enhancedCode) return smtpCode ? "General" : "Undetermined";
  const [, subject, detail] = enhancedCode.split(".");
  if (subject === "1" && ["1", "2", "3", "6", "10"].includes(detail ?? "")) return "NoEmail";
  if (subject === "2" && detail === "2") return "MailboxFull";
  if ((subject === "2" || subject === "3") && detail === "4") return "MessageTooLarge";
  if (subject === "6" || subject === "7") return "ContentRejected";
  return "General";
}

/**
 * Permanent (a 5.x.x status or a 5xx reply), Transient (a 4.x.x status: a report that gave up after
 * temporary failures), or Undetermined (a bounce that says neither).
 */
export function bounceType(event: Pick<ReportedEvent, "enhancedCode" | "smtpCode">): "Permanent" | "Transient" | "Undetermined" {
  if (event.enhancedCode?.startsWith("5.") || (!event.enhancedCode && (event.smtpCode ?? 0) >= 500)) return "Permanent";
  if (event.enhancedCode?.startsWith("4.")) return "Transient";
  return "Undetermined";
}

/** The payload of one event: `{type, created_at, data}` exactly as Resend's webhooks send it. */
export function webhookPayload(type: EmailEventType, message: EventMessage, event: ReportedEvent) {
  const data = {
    email_id: message.id,
    created_at: message.createdAt,
    from: formatMailbox(message.from),
    to: message.to.map((m) => m.address),
    subject: message.subject,
    message_id: message.messageId,
    tags: Object.fromEntries(message.tags.map((t) => [t.name, t.value])),
    // Mailroom's own: the recipient a per-recipient event is about (Resend has no such field).
    ...(event.recipient ? { recipient: event.recipient } : {}),
    ...(type === "email.bounced" ? { bounce: { type: bounceType(event), subType: bounceSubType(event.enhancedCode, event.smtpCode), message: event.detail ?? "" } } : {}),
    ...(type === "email.failed" ? { failed: { reason: event.detail ?? "" } } : {}),
    ...(type === "email.suppressed" ? { suppressed: { type: "OnAccountSuppressionList", message: event.detail ?? "" } } : {}),
  };
  return { type, created_at: event.at, data };
}
