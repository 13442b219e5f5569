// DKIM's pure parts: relaxed canonicalization as RFC 6376 §3.4.5 shows it, the signature field's shape,
// and DKIM_PRIVATE_KEY in every form an operator may paste it (and the keys it must refuse).
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config";
import { relaxedBody, relaxedHeader, signMessage } from "../../src/core/dkim";
import { importDkimKey, parseDkimKey } from "../../src/core/dkim-key";
import { sendEmailSchema } from "../../src/core/schema";
import { DKIM_DOMAIN, ED25519_KEY, RSA_KEY } from "../fixtures/dkim-keys";

const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `app:${"a".repeat(64)}` };
const der = (pem: string) => pem.replace(/-----[^-]+-----|\s/g, "");

async function pkcs8Of(params: Parameters<typeof crypto.subtle.generateKey>[0]): Promise<string> {
  const pair = (await crypto.subtle.generateKey(params, true, ["sign", "verify"])) as CryptoKeyPair;
  const bytes = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer);
  return btoa(String.fromCharCode(...bytes));
}

describe("relaxed canonicalization (RFC 6376 §3.4.5)", () => {
  it("of header fields: lower-case names, unfolded, whitespace runs to one space, none around the colon or at the end", () => {
    expect(relaxedHeader("A: X")).toBe("a:X");
    expect(relaxedHeader("B : Y\t\r\n\tZ  ")).toBe("b:Y Z");
    // Only WSP (space, tab) is white space here: a no-break space stays.
    expect(relaxedHeader("X-N: \u00a0value\u00a0 ")).toBe("x-n:\u00a0value\u00a0");
  });

  it("of the body: whitespace runs to one space, none at line ends, no empty lines at the end", () => {
    expect(relaxedBody(" C \r\nD \t E\r\n\r\n\r\n")).toBe(" C\r\nD E\r\n");
    expect(relaxedBody("\r\n\r\n")).toBe("");
    expect(relaxedBody("")).toBe("");
    expect(relaxedBody("no final line end")).toBe("no final line end\r\n");
    // Lines of white space only are empty once reduced, and go with the other empty lines at the end.
    expect(relaxedBody("text\r\n \t \r\n\t\r\n")).toBe("text\r\n");
    expect(relaxedBody("a\r\n \r\nb\r\n")).toBe("a\r\n\r\nb\r\n");
    expect(relaxedBody("\u00a0\r\n")).toBe("\u00a0\r\n");
  });
});

describe("the DKIM-Signature field", () => {
  it("comes first, folded into lines of at most 78 characters, with the tags RFC 6376 requires", async () => {
    const key = await importDkimKey(parseDkimKey(RSA_KEY));
    const message = `From: a@${DKIM_DOMAIN}\r\nTo: b@example.com\r\nSubject: hi\r\nX-One: 1\r\nx-one: 2\r\n\r\nbody\r\n`;
    const signed = await signMessage(message, { domain: DKIM_DOMAIN, selector: "s", algorithm: "rsa-sha256", key }, new Date("2026-12-02T00:00:00Z"));
    expect(signed.endsWith(message)).toBe(true);
    const field = signed.slice(0, -message.length);
    for (const line of field.split("\r\n")) expect(line.length).toBeLessThanOrEqual(78);
    const unfolded = field.replace(/\r\n[ \t]/g, " ");
    expect(unfolded).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=mailroom\.test; s=s; t=1796169600; /);
    // Each X-* field as often as it occurs; the others once more than they do (an absent one once).
    expect(/h=([^;]+);/.exec(unfolded)![1]!.replace(/\s/g, "")).toBe(
      "from:from:to:to:cc:reply-to:subject:subject:date:message-id:mime-version:content-type:list-unsubscribe:list-unsubscribe-post:in-reply-to:references:x-one:x-one",
    );
    expect(unfolded).toMatch(/ bh=[A-Za-z0-9+/]{43}=; b= ?[A-Za-z0-9+/ ]+=*\r\n$/);
  });
});

describe("what signMessage refuses to sign", () => {
  it.each([
    ["a bare LF in the header", "From: a@b.example\nTo: c@d.example\r\n\r\nbody\r\n"],
    ["a bare CR in the body", "From: a@b.example\r\n\r\nbo\rdy\r\n"],
    ["a bare LF in the body", "From: a@b.example\r\n\r\nbody\n"],
    ["a header line without a colon", "From: a@b.example\r\nnot a field\r\n\r\nbody\r\n"],
    ["a message without From", "To: c@d.example\r\n\r\nbody\r\n"],
    ["a message without a body separator", "From: a@b.example\r\n"],
  ])("%s", async (_what, message) => {
    const key = await importDkimKey(parseDkimKey(ED25519_KEY));
    await expect(signMessage(message, { domain: DKIM_DOMAIN, selector: "s", algorithm: "ed25519-sha256", key })).rejects.toThrow(/^the message has|^a header line/);
  });
});

describe("DKIM_PRIVATE_KEY", () => {
  const rsaOneLine = RSA_KEY.replace(/\n/g, "\\n");
  it.each([
    ["a PEM with real newlines", RSA_KEY, "rsa-sha256"],
    ["a PEM with \\n escapes on one line", rsaOneLine, "rsa-sha256"],
    ["a PEM with \\r\\n escapes", RSA_KEY.replace(/\n/g, "\\r\\n"), "rsa-sha256"],
    ["the base64 of the DER", der(RSA_KEY), "rsa-sha256"],
    ["an Ed25519 key as base64 DER", ED25519_KEY, "ed25519-sha256"],
    ["an Ed25519 key as PEM", `-----BEGIN PRIVATE KEY-----\n${ED25519_KEY}\n-----END PRIVATE KEY-----\n`, "ed25519-sha256"],
  ])("reads %s", async (_form, setting, algorithm) => {
    const config = parseConfig({ ...base, DKIM_DOMAIN: "Acme.Example", DKIM_SELECTOR: "Mail2026", DKIM_PRIVATE_KEY: setting });
    expect(config.dkim).toMatchObject({ domain: "acme.example", selector: "mail2026", key: { algorithm } });
    await expect(importDkimKey(config.dkim!.key)).resolves.toBeDefined();
  });

  const rsa = (modulusLength: number) => pkcs8Of({ name: "RSASSA-PKCS1-v1_5", modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" });
  it("refuses an RSA key under 2048 bits or over 4096, naming its size", async () => {
    const [small, large] = [await rsa(1024), await rsa(4224)];
    expect(() => parseDkimKey(small)).toThrow("its RSA modulus is 1024 bits; Mailroom requires at least 2048");
    expect(parseDkimKey(await rsa(2048)).algorithm).toBe("rsa-sha256");
    expect(parseDkimKey(await rsa(4096)).algorithm).toBe("rsa-sha256");
    expect(() => parseDkimKey(large)).toThrow("its RSA modulus is 4224 bits; verifiers need not handle more than 4096");
  });

  it("refuses a key of another algorithm", async () => {
    const ecdsa = await pkcs8Of({ name: "ECDSA", namedCurve: "P-256" });
    expect(() => parseDkimKey(ecdsa)).toThrow("it is neither an RSA nor an Ed25519 key");
  });

  it.each([
    ["a PKCS#1 key", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "PKCS#1"],
    ["an encrypted key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----", "encrypted"],
    ["a public key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", '"PUBLIC KEY"'],
    ["a PEM without its end", "-----BEGIN PRIVATE KEY-----\nMIIB", "no END PRIVATE KEY"],
    ["not base64", "hunter2!", "neither PEM nor base64"],
    ["a cut-off key", der(RSA_KEY).slice(0, 200), "DER"],
    ["bytes after the key", btoa(atob(der(RSA_KEY)) + "\0\0\0"), "bytes after the key"],
    ["another DER structure", btoa("\x02\x01\x00"), "not a PKCS#8 private key"],
  ])("refuses %s, saying why and never echoing it", (_what, setting, reason) => {
    let error: unknown;
    try {
      parseConfig({ ...base, DKIM_DOMAIN: "acme.example", DKIM_SELECTOR: "mail", DKIM_PRIVATE_KEY: setting });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const [problem] = (error as ConfigError).problems;
    expect(problem).toMatch(/^DKIM_PRIVATE_KEY: /);
    expect(problem).toContain(reason);
    expect(problem).not.toContain(setting.slice(-20));
  });

  it("needs all three settings, a domain name and a selector of DNS labels", () => {
    const problems = (env: Record<string, string>) => {
      try {
        parseConfig({ ...base, ...env });
        return [];
      } catch (error) {
        return (error as ConfigError).problems;
      }
    };
    expect(problems({ DKIM_DOMAIN: "acme.example" })).toEqual([
      "DKIM_SELECTOR: required when DKIM_DOMAIN is set (DKIM needs all three)",
      "DKIM_PRIVATE_KEY: required when DKIM_DOMAIN is set (DKIM needs all three)",
    ]);
    expect(problems({ DKIM_SELECTOR: "s", DKIM_PRIVATE_KEY: ED25519_KEY })).toEqual(["DKIM_DOMAIN: required when DKIM_SELECTOR and DKIM_PRIVATE_KEY are set (DKIM needs all three)"]);
    expect(problems({ DKIM_DOMAIN: "not a domain", DKIM_SELECTOR: "bad_selector", DKIM_PRIVATE_KEY: ED25519_KEY })).toEqual([
      "DKIM_DOMAIN: must be a domain name (IDNs as punycode)",
      "DKIM_SELECTOR: must be one or more DNS labels separated by dots",
    ]);
    expect(problems({ DKIM_DOMAIN: "", DKIM_SELECTOR: "", DKIM_PRIVATE_KEY: "" })).toEqual([]);
    expect(parseConfig({ ...base, DKIM_DOMAIN: "acme.example", DKIM_SELECTOR: "2026.mail", DKIM_PRIVATE_KEY: ED25519_KEY }).dkim?.selector).toBe("2026.mail");
  });
});

describe("the header names a client may send", () => {
  it("have no semicolon: DKIM lists them in h=, whose tags end at semicolons", () => {
    const request = (name: string) => sendEmailSchema.safeParse({ from: "a@mailroom.test", to: "b@example.com", subject: "s", text: "t", headers: { [name]: "v" } });
    expect(request("X-Good-Name").success).toBe(true);
    const refused = request("X-Bad;Name");
    expect(refused.success).toBe(false);
    expect(JSON.stringify(refused.error?.issues)).toContain("no colon, semicolon or space");
  });
});
