import { describe, expect, it } from "vitest";
import { LineSplitter, parseCapabilities, ReplyAssembler, type SmtpReply } from "../../src/transport/smtp/reply";

function assemble(lines: string[]) {
  const assembler = new ReplyAssembler();
  let result;
  for (const line of lines) result = assembler.push(line);
  return result;
}

describe("SMTP replies", () => {
  it("splits CRLF and bare LF lines and keeps partial ones for later", () => {
    const splitter = new LineSplitter();
    expect(splitter.push("250-one\r\n250-tw")).toEqual(["250-one"]);
    expect(splitter.push("o\n250 three\r\n")).toEqual(["250-two", "250 three"]);
    expect(splitter.pending).toBe(0);
  });

  it("assembles multi-line replies and reads the enhanced status code", () => {
    expect(assemble(["550-5.1.1 No such user", "550 5.1.1 Try again never"])).toEqual({
      code: 550,
      enhancedCode: "5.1.1",
      text: "No such user\nTry again never",
      lines: ["5.1.1 No such user", "5.1.1 Try again never"],
    });
    expect(assemble(["220 ready"])).toMatchObject({ code: 220, enhancedCode: undefined, text: "ready" });
    expect(new ReplyAssembler().push("250-more to come")).toBeUndefined();
    // RFC 5321 §4.2: the text after the code is optional.
    expect(assemble(["250"])).toMatchObject({ code: 250, text: "" });
    expect(assemble(["250 2.0.0"])).toMatchObject({ code: 250, enhancedCode: "2.0.0", text: "" });
  });

  it.each([["hello"], ["600 nope"], ["25 short"]])("rejects the malformed line %j", (line) => {
    expect(assemble([line])).toHaveProperty("error");
  });

  it("rejects a code change inside a multi-line reply", () => {
    expect(assemble(["250-one", "251 two"])).toHaveProperty("error");
  });

  it("reads EHLO keywords and AUTH mechanisms", () => {
    const reply = assemble(["250-relay.example greets you", "250-PIPELINING", "250-AUTH PLAIN LOGIN", "250-AUTH=CRAM-MD5", "250 STARTTLS"]) as SmtpReply;
    const caps = parseCapabilities(reply);
    expect([...caps.keywords]).toEqual(["PIPELINING", "AUTH", "STARTTLS"]);
    expect([...caps.authMechanisms]).toEqual(["PLAIN", "LOGIN", "CRAM-MD5"]);
  });
});
