// GET /v1/emails' rows: a key's own emails, newest first, a page at a time through the messages_by_key
// index (api_key_name, created_at, id), each with the type of its latest history event for `last_event`.
import type { Mailbox } from "../core/address";
import type { PageRequest } from "../core/pagination";
import { readPage } from "./pages";
import type { MessageStatus } from "./messages";

export interface ListedEmail {
  id: string;
  messageId: string;
  from: Mailbox;
  to: Mailbox[];
  cc: Mailbox[];
  bcc: Mailbox[];
  replyTo: Mailbox[];
  subject: string;
  createdAt: string;
  scheduledAt: string | null;
  status: MessageStatus;
  /** The latest history event's type, interruptions left out. */
  lastEventType: string | null;
}

type Row = {
  id: string;
  message_id: string;
  from_json: string;
  to_json: string;
  cc_json: string;
  bcc_json: string;
  reply_to_json: string;
  subject: string;
  created_at: string;
  scheduled_at: string | null;
  status: MessageStatus;
  last_type: string | null;
};

const COLUMNS = `id, message_id, from_json, to_json, cc_json, bcc_json, reply_to_json, subject, created_at, scheduled_at, status,
  (SELECT type FROM events WHERE events.message_id = messages.id AND type <> 'interrupted' ORDER BY seq DESC LIMIT 1) AS last_type`;

/** Null: the cursor is not one of the key's emails. */
export async function listEmails(db: D1Database, apiKeyName: string, page: PageRequest): Promise<{ emails: ListedEmail[]; hasMore: boolean } | null> {
  const found = await readPage<Row>(db, { from: "messages", scope: "api_key_name = ?", scopeValues: [apiKeyName], columns: COLUMNS }, page);
  return (
    found && {
      hasMore: found.hasMore,
      emails: found.rows.map((r) => ({
        id: r.id,
        messageId: r.message_id,
        from: JSON.parse(r.from_json),
        to: JSON.parse(r.to_json),
        cc: JSON.parse(r.cc_json),
        bcc: JSON.parse(r.bcc_json),
        replyTo: JSON.parse(r.reply_to_json),
        subject: r.subject,
        createdAt: r.created_at,
        scheduledAt: r.scheduled_at,
        status: r.status,
        lastEventType: r.last_type,
      })),
    }
  );
}
