// `npm run key`: the key it prints is let in by the API_KEYS entry it prints, with the sender domains given.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";

const run = (...args: string[]) => promisify(execFile)(process.execPath, ["scripts/key.mjs", ...args]);
const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>" };

describe("npm run key", () => {
  it("prints a fresh key and the API_KEYS entry that admits it, scoped to the domains given", async () => {
    const [first, second] = await Promise.all([run("shop", "Shop.Example|example.org"), run("shop")]);
    const [key, entry] = [...first.stdout.matchAll(/^ {2}(\S+)$/gm)].map((m) => m[1]!);
    expect(key).toMatch(/^mr_[A-Za-z0-9_-]{43}$/);
    expect(second.stdout).not.toContain(key!);
    const [apiKey] = parseConfig({ ...base, API_KEYS: entry }).apiKeys;
    expect(apiKey).toMatchObject({ name: "shop", senderDomains: ["shop.example", "example.org"] });
    expect(Buffer.from(apiKey!.digest).toString("hex")).toBe(createHash("sha256").update(key!).digest("hex"));
  });

  it("refuses a bad name or bad domains, printing no key", async () => {
    for (const args of [["has space"], ["shop", "not a domain"]]) {
      const failed = await run(...args).catch((error: { code: number; stdout: string }) => error);
      expect(failed).toMatchObject({ code: 2, stdout: "" });
    }
  });
});
