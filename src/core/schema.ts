// What a client may send to POST /v1/emails, validated with zod. Unknown fields are rejected rather
// than ignored: silently dropping a field the client relies on (a bcc, an attachment) would lose mail.
import * as z from "zod";
import { parseMailbox, type Mailbox } from "./address";
import { scheduledAtSchema } from "./schedule";

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

const subject = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_SUBJECT_LENGTH, `must be at most ${MAX_SUBJECT_LENGTH} characters`)
  .refine((s) => !/[\u0000-\u001f\u007f\u2028\u2029]/.test(s), "must not contain line breaks or control characters");

const body = z.string().min(1, "must not be empty").max(MAX_BODY_CHARS, `must be at most ${MAX_BODY_CHARS} characters`);

export const sendEmailSchema = z
  .strictObject({
    from: mailboxSchema.optional(),
    to: mailboxList.refine((list) => list.length > 0, "at least one recipient is required"),
    cc: mailboxList.optional(),
    subject,
    text: body.optional(),
    html: body.optional(),
    scheduled_at: scheduledAtSchema.optional(),
  })
  .refine((m) => m.text !== undefined || m.html !== undefined, {
    message: "provide text or html (or both)",
    path: ["text"],
  })
  .refine((m) => m.to.length + (m.cc?.length ?? 0) <= MAX_RECIPIENTS, {
    message: `at most ${MAX_RECIPIENTS} recipients in to and cc together`,
    path: ["cc"],
  })
  // snake_case is the API's; inside, names are camelCase.
  .transform(({ scheduled_at, ...message }) => ({ ...message, scheduledAt: scheduled_at }));

export type SendEmailRequest = z.output<typeof sendEmailSchema>;

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
