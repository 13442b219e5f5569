// TRANSPORT=cloudflare under a real `wrangler dev`: the local send_email binding takes the mail and logs
// the .eml file it wrote; that file is read back and compared with what the same request sent over SMTP
// (TRANSPORT=smtp, into the inbox) carried. They differ only where each build differs by nature (Date,
// MIME boundaries) and in the Message-ID the local binding puts in place of Mailroom's.
import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { callApi, createStack, type Stack } from "../helpers/e2e-stack";

let stack: Stack;
let wrangler: WranglerDev | undefined;

beforeAll(async () => {
  stack = await createStack();
});

afterAll(async () => {
  await wrangler?.stop();
  await stack?.close();
});

const REQUEST = {
  to: "Zoë Example <zoe@example.com>",
  subject: "Grüße aus dem Mailroom — a subject long enough that its encoded form is folded",
  text: "Hello Zoë,\n.a line that starts with a dot\nand the end.",
  html: "<p>Hello <b>Zoë</b></p>",
  headers: { "X-Entity-Ref-ID": "e2e-1" },
  attachments: [{ filename: "notes.txt", content: Buffer.from("attached text\r\n").toString("base64") }],
};

/** Sends REQUEST through the running wrangler dev and waits until it is sent; returns the email's view. */
async function sendAndWait(): Promise<{ id: string; events: { type: string; transport: string | null; detail: string | null }[] }> {
  const api = (pathname: string, init?: RequestInit) => callApi(wrangler!.url, stack.apiKey, pathname, init);
  const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(REQUEST) });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  for (const deadline = Date.now() + 20_000; ; await delay(100)) {
    const email = (await (await api(`/v1/emails/${id}`)).json()) as { id: string; status: string; events: never[] };
    if (email.status === "sent") return email;
    if (Date.now() > deadline) throw new Error(`email ${id} is ${email.status}, not sent:\n${wrangler!.output()}`);
  }
}

/** The parts of a message that differ between two builds of the same request, made equal. */
function comparable(raw: string): string {
  const boundaries = [...new Set([...raw.matchAll(/boundary="([^"]+)"/g)].map((m) => m[1]!))];
  let normal = raw.replace(/^Date: .*\r\n/m, "Date: (build time)\r\n").replace(/^Message-ID: .*\r\n/im, "Message-ID: (id)\r\n");
  boundaries.forEach((boundary, i) => (normal = normal.split(boundary).join(`(boundary ${i + 1})`)));
  return normal;
}

describe("TRANSPORT=cloudflare under wrangler dev", () => {
  it("writes the message the binding took to the .eml it logs: SMTP's message, but for the Message-ID it gave", async () => {
    wrangler = await startWranglerDev(stack.options);
    await sendAndWait();
    const [overSmtp, ...more] = stack.inbox.messages;
    expect(more).toHaveLength(0);
    await wrangler.stop();

    // No relay at all this time: SMTP_HOST is not needed without smtp in TRANSPORT.
    wrangler = await startWranglerDev({ ...stack.options, vars: { ...stack.options.vars, TRANSPORT: "cloudflare", SMTP_HOST: "" } });
    const email = await sendAndWait();
    const sent = email.events.find((e) => e.type === "sent")!;
    expect(sent.transport).toBe("cloudflare");
    const [messageId] = /<[^>]+>/.exec(sent.detail!)!;
    let file: string | undefined;
    for (const deadline = Date.now() + 10_000; !file; await delay(50)) {
      file = /^Email: (.+\.eml)$/m.exec(wrangler.output())?.[1];
      if (Date.now() > deadline) throw new Error(`wrangler dev logged no .eml file:\n${wrangler.output()}`);
    }
    const copy = await readFile(file, "utf8");
    expect(stack.inbox.messages).toHaveLength(1); // nothing more went to the relay

    expect(copy).toMatch(new RegExp(`^Message-ID: ${messageId}\r$`, "m"));
    expect(copy).not.toContain(/^Message-ID: (.*)\r$/m.exec(overSmtp!.raw)![1]);
    expect(comparable(copy)).toBe(comparable(overSmtp!.raw));
    expect(copy).toContain("\r\n.a line that starts with a dot\r\n"); // not dot-stuffed: the binding is not SMTP
    expect(copy).toContain('filename="notes.txt"');
  });
});
