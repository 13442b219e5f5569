// What a client may send to /v1/suppressions (Resend's AddSuppressionOptions, the batch add and remove
// options, and the list's origin filter), validated with zod. An address is a bare one (no display name).
import * as z from "zod";
import { parseMailbox } from "./address";

export const MAX_SUPPRESSION_BATCH = 100;

const address = z
  .string({ error: "must be an email address" })
  .max(320, "must be at most 320 characters")
  .refine((value) => {
    const parsed = parseMailbox(value);
    return parsed.ok && !parsed.mailbox.name && parsed.mailbox.address.toLowerCase() === value.trim().toLowerCase();
  }, "must be a bare email address, like ada@example.com")
  .transform((value) => value.trim());

const addresses = z.array(address, { error: "must be an array of email addresses" }).min(1, "must name at least one").max(MAX_SUPPRESSION_BATCH, `at most ${MAX_SUPPRESSION_BATCH} at a time`);

export const addSuppressionSchema = z.strictObject({ email: address });
export const batchAddSuppressionsSchema = z.strictObject({ emails: addresses });
export const batchRemoveSuppressionsSchema = z.union(
  [
    z.strictObject({ emails: addresses }),
    z.strictObject({ ids: z.array(z.string().min(1).max(64), { error: "must be an array of ids" }).min(1, "must name at least one").max(MAX_SUPPRESSION_BATCH, `at most ${MAX_SUPPRESSION_BATCH} at a time`) }),
  ],
  { error: "give emails or ids (not both)" },
);
export const suppressionOriginSchema = z.enum(["bounce", "complaint", "manual"], { error: "must be bounce, complaint or manual" });
