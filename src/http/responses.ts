// What the API answers, as zod schemas: the handlers build their answers as these types (`satisfies`, so a
// field added to one and not the other fails the typecheck), and /openapi.json describes them from here.
import * as z from "zod";
import { ERROR_STATUS, type ErrorCode } from "./errors";

const id = z.string().meta({ description: "the email's id (a UUID)" });
const status = z.enum(["scheduled", "queued", "sending", "retrying", "sent", "failed", "canceled"]);

export const acceptedSchema = z.object({ id, status: z.enum(["queued", "scheduled"]) });
export const batchAcceptedSchema = z.object({ data: z.array(z.object({ id })).meta({ description: "the emails' ids, in the order sent" }) });
export const classicAcceptedSchema = z.object({ message: z.string(), id });
export const rescheduledSchema = z.object({ object: z.literal("email"), id });
export const canceledSchema = z.object({ object: z.literal("email"), id, status: z.literal("canceled") });
export const healthSchema = z.union([
  z.object({ status: z.literal("ok") }),
  // 503: the settings cannot work; which ones, by name (never their values).
  z.object({ status: z.literal("misconfigured"), settings: z.array(z.string()) }),
]);

export const emailViewSchema = z.object({
  id,
  status,
  from: z.string(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  bcc: z.array(z.string()),
  reply_to: z.array(z.string()),
  subject: z.string(),
  template: z.object({ id: z.string(), locale: z.string().nullable() }).nullable(),
  tags: z.array(z.object({ name: z.string(), value: z.string() })),
  created_at: z.string(),
  updated_at: z.string(),
  scheduled_at: z.string().nullable(),
  sent_at: z.string().nullable(),
  attempts: z.number().int(),
  last_error: z.string().nullable(),
  recipients: z.array(z.object({ address: z.string(), status: z.enum(["pending", "sent", "deferred", "failed"]), smtp_code: z.number().int().nullable(), detail: z.string().nullable() })),
  events: z.array(
    z.object({
      at: z.string(),
      type: z.enum(["accepted", "sent", "deferred", "failed", "interrupted", "rescheduled", "canceled"]),
      attempt: z.number().int().nullable(),
      smtp_code: z.number().int().nullable(),
      detail: z.string().nullable(),
    }),
  ),
});

export const templateListSchema = z.object({
  data: z.array(
    z.object({
      name: z.string().meta({ description: "what template.id names" }),
      locales: z.array(z.string()).meta({ description: "the locale variants besides the default" }),
      variables: z.array(z.string()).meta({ description: "the variables it uses outside sections, in any variant" }),
    }),
  ),
});

export const renderedTemplateSchema = z.object({
  subject: z.string(),
  html: z.string(),
  text: z.string(),
  locale: z.string().nullable().meta({ description: "the variant used; null: the default" }),
});

export const errorSchema = z.object({
  statusCode: z.number().int(),
  name: z.string().meta({ description: "the error code" }),
  message: z.string().meta({ description: "the message, naming every field at fault" }),
  error: z.object({
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
