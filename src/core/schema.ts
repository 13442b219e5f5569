// What a client may send to POST /v1/emails, validated with zod. Unknown fields are rejected rather
// than ignored: silently dropping a field the client relies on (a bcc, an attachment) would lose mail.
import * as z from "zod";
import { parseMailbox, type Mailbox } from "./address";
import { attachmentBytes, isBase64 } from "./attachments";
import { scheduledAtSchema } from "./schedule";
import { LOCALE, TEMPLATE_NAME } from "./templates";

export const MAX_RECIPIENTS = 50;
export const MAX_SUBJECT_LENGTH = 998;
/** Text and HTML bodies each; the whole request is capped by the HTTP body limit too. */
export const MAX_BODY_CHARS = 256 * 1024;

/** One address as clients write it, parsed into a Mailbox; the issue quotes the offending value. */
export const mailboxSchema = z.string().transform((value, ctx): Mailbox => {
  const parsed = parseMailbox(value);
  if (!parsed.ok) {
    ctx.addIssue({ code: "custom", message: `"${value.slice(0, 100)}" ${parsed.error}` });
    return z.NEVER;
  }
  return parsed.mailbox;
});

/** One address or an array of them; a single string is read as a list of one (issues say "to.0"). */
const mailboxList = z.preprocess(
  (value) => (typeof value === "string" ? [value] : value),
  z.array(mailboxSchema, { error: "must be an address or an array of addresses" }).max(MAX_RECIPIENTS, `at most ${MAX_RECIPIENTS} addresses`),
);

/** Control characters (CR, LF and NUL among them) and the Unicode line separators: never in a header. */
export const NOT_IN_A_HEADER = /[\u0000-\u001f\u007f\u2028\u2029]/;

const subject = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_SUBJECT_LENGTH, `must be at most ${MAX_SUBJECT_LENGTH} characters`)
  .refine((s) => !NOT_IN_A_HEADER.test(s), "must not contain line breaks or control characters");

const body = z.string().min(1, "must not be empty").max(MAX_BODY_CHARS, `must be at most ${MAX_BODY_CHARS} characters`);

export const MAX_HEADERS = 20;
/** A header line may be 998 octets (RFC 5322 §2.1.1); values longer than this are folded, never cut. */
export const MAX_HEADER_VALUE_CHARS = 900;
/**
 * Headers a client may set: its own X-* ones, and these few that need no part of Mailroom's. Every other
 * name — From, To, Cc, Bcc, Subject, Date, Message-ID, MIME-Version, Content-*, Return-Path,
 * DKIM-Signature, Received, Reply-To (use reply_to) and the rest — is Mailroom's to write.
 */
export const CLIENT_HEADERS = ["List-Unsubscribe", "List-Unsubscribe-Post", "References", "In-Reply-To"];
const CLIENT_HEADER_NAMES = new Set(CLIENT_HEADERS.map((name) => name.toLowerCase()));

const headerEntries = z
  .record(
    z
      .string()
      // RFC 5322 §3.6.8: printable ASCII but the colon; and no semicolon (which RFC 5322 allows), since a
      // DKIM signature lists the names in h=, and its tags are separated by semicolons (RFC 6376 §3.2).
      .regex(/^[\x21-\x39\x3c-\x7e]{1,76}$/, "header names are 1–76 printable ASCII characters, no colon, semicolon or space")
      .refine((name) => /^x-/i.test(name) || CLIENT_HEADER_NAMES.has(name.toLowerCase()), {
        message: `only X-* headers and ${CLIENT_HEADERS.join(", ")} may be set; the others are Mailroom's to write`,
      }),
    z
      .string()
      .min(1, "must not be empty")
      .max(MAX_HEADER_VALUE_CHARS, `must be at most ${MAX_HEADER_VALUE_CHARS} characters`)
      .refine((value) => !NOT_IN_A_HEADER.test(value), "must not contain line breaks or control characters"),
  )
  .refine((all) => new Set(Object.keys(all).map((name) => name.toLowerCase())).size === Object.keys(all).length, "each header name once (names are compared without regard to case)");

/** Counted before any entry is checked: 200,000 bad entries would otherwise make 200,000 issues. */
const headers = z
  .record(z.string(), z.unknown())
  .refine((all) => Object.keys(all).length <= MAX_HEADERS, { message: `at most ${MAX_HEADERS} headers`, abort: true })
  .pipe(headerEntries);

/** Resend's tags: stored and returned, never sent to the relay. */
const TAG_PART = z.string().regex(/^[A-Za-z0-9_-]{1,256}$/, "1–256 ASCII letters, digits, _ or -");
export const MAX_TAGS = 20;
/**
 * Attachments: at most this many, together at most this many bytes once decoded. Base64 makes 5 MiB about
 * 7 MB on the wire, inside the 10 MB many relays take by default (Postfix's message_size_limit).
 */
export const MAX_ATTACHMENTS = 10;
export const MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024;

const attachment = z
  .strictObject({
    filename: z
      .string()
      .min(1, "must not be empty")
      .max(255, "must be at most 255 characters")
      .refine((name) => !NOT_IN_A_HEADER.test(name), "must not contain line breaks or control characters"),
    content: z.string({ error: "the file's content, base64-encoded, is required" }).refine(isBase64, "must be base64 (A–Z, a–z, 0–9, +, /, with = padding)"),
    content_type: z
      .string()
      .regex(/^[A-Za-z0-9!#$&^_.+-]{1,64}\/[A-Za-z0-9!#$&^_.+-]{1,64}$/, "must be a MIME type such as application/pdf")
      .optional(),
    content_id: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,200}$/, "1–200 characters of A–Z, a–z, 0–9 and !#$%&'*+/=?^_`{|}~.@-")
      .optional(),
    // Resend's SDKs send `path` for a URL to fetch; Mailroom never fetches anything on a client's behalf.
    path: z.undefined({ error: "Mailroom does not fetch URLs; send the file's content (base64) instead" }).optional(),
  })
  .transform(({ content_type, content_id, path: _path, ...rest }) => ({ ...rest, contentType: content_type, contentId: content_id }));

const attachments = z
  .array(attachment, { error: "must be an array of attachments" })
  .max(MAX_ATTACHMENTS, `at most ${MAX_ATTACHMENTS} attachments`)
  .refine((all) => attachmentBytes(all) <= MAX_ATTACHMENT_BYTES, `at most ${MAX_ATTACHMENT_BYTES / 1024 / 1024} MiB of attachments in all (decoded)`);

const tags = z.array(z.strictObject({ name: TAG_PART, value: TAG_PART }), { error: "must be an array of {name, value}" }).max(MAX_TAGS, `at most ${MAX_TAGS} tags`);

/** A template and its data (Resend's `template` field), with the locale Mailroom adds. */
export const templateSchema = z.strictObject({
  id: z.string().regex(TEMPLATE_NAME, "a template name: lower-case letters, digits, _ and -, at most 64"),
  variables: z.record(z.string(), z.unknown(), { error: "must be an object of the template's variables" }).default({}),
  locale: z.string().regex(LOCALE, "a language tag such as en, zh or zh-CN").optional(),
});

/** POST /v1/templates/{name}/render. */
export const renderTemplateSchema = templateSchema.omit({ id: true });

export const sendEmailSchema = z
  .strictObject({
    from: mailboxSchema.optional(),
    to: mailboxList.refine((list) => list.length > 0, "at least one recipient is required"),
    cc: mailboxList.optional(),
    bcc: mailboxList.optional(),
    reply_to: mailboxList.optional(),
    subject: subject.optional(),
    text: body.optional(),
    html: body.optional(),
    template: templateSchema.optional(),
    headers: headers.optional(),
    tags: tags.optional(),
    attachments: attachments.optional(),
    scheduled_at: scheduledAtSchema.optional(),
  })
  .refine((m) => m.text !== undefined || m.html !== undefined || m.template !== undefined, {
    message: "provide text or html (or both), or a template",
    path: ["text"],
  })
  .refine((m) => m.template === undefined || (m.text === undefined && m.html === undefined), {
    message: "a template makes the html and text: send either a template or html/text, not both",
    path: ["template"],
  })
  .refine((m) => m.subject !== undefined || m.template !== undefined, { message: "is required (unless a template gives it)", path: ["subject"] })
  .refine((m) => new Set([...m.to, ...(m.cc ?? []), ...(m.bcc ?? [])].map((r) => r.address)).size <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to, cc and bcc together (each address counted once)`,
    path: ["to"],
  })
  // snake_case is the API's; inside, names are camelCase.
  .transform(({ scheduled_at, reply_to, ...message }) => ({ ...message, replyTo: reply_to, scheduledAt: scheduled_at }));

export type SendEmailRequest = z.output<typeof sendEmailSchema>;

/**
 * POST /send-notification, the request of the FastAPI service Mailroom replaces: one recipient, a
 * subject, and `content` sent as the plain-text body.
 */
export const classicNotificationSchema = z
  .strictObject({ recipient: mailboxSchema, subject, content: body })
  .transform(({ recipient, subject, content }): SendEmailRequest => ({ to: [recipient], subject, text: content, replyTo: undefined, scheduledAt: undefined }));

/** PATCH /v1/emails/{id}: what Resend's emails.update sends. */
export const rescheduleSchema = z.strictObject({ scheduled_at: scheduledAtSchema }).transform(({ scheduled_at }) => ({ scheduledAt: scheduled_at }));

export interface ValidationIssue {
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] };

/** Runs a schema and flattens zod's issues into the API's `{path, message}` shape. */
export function validate<T>(schema: z.ZodType<T>, input: unknown): Validated<T> {
  const result = schema.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  const issues = result.error.issues.map((issue) => ({
    path: issue.path.map(String).join(".") || "(body)",
    message: issue.message,
  }));
  return { ok: false, issues };
}
