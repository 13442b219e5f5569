// The start of a session, up to the first mail: the greeting, EHLO (HELO for a pre-ESMTP relay),
// STARTTLS when configured — required then, never optional, so credentials never go out in plaintext —
// and AUTH PLAIN or LOGIN. Says which extensions the relay offered once TLS was up.
import type { SmtpOptions } from "./session";
import { base64 } from "./commands";
import { replyFailure } from "../transport";
import { SmtpFailed, type SmtpConnection } from "./connection";
import { parseCapabilities, type Capabilities } from "./reply";

/** What the relay offered (after STARTTLS, when it was used: only what it said under TLS counts). */
export interface Offered {
  /** PIPELINING (RFC 2920). */
  pipelining: boolean;
  /** DSN (RFC 3461): only then do MAIL and RCPT carry its parameters (§4). */
  dsn: boolean;
}

export async function handshake(connection: SmtpConnection, options: SmtpOptions): Promise<Offered> {
  const greeting = await connection.readReply("greeting", "(greeting)");
  if (greeting.code !== 220) throw new SmtpFailed(replyFailure(greeting, "greeting", "(greeting)"));
  let capabilities = await ehlo(connection, options);
  if (options.security === "starttls") {
    if (!capabilities.keywords.has("STARTTLS")) {
      throw new SmtpFailed({
        kind: "tls",
        stage: "starttls",
        command: "EHLO",
        message: "SMTP_SECURITY is starttls but the server does not offer STARTTLS; refusing to continue in plaintext",
      });
    }
    await connection.expect("STARTTLS", 220, "starttls");
    connection.upgradeToTls();
    capabilities = await ehlo(connection, options);
  }
  if (options.user !== undefined) await authenticate(connection, options, capabilities);
  return { pipelining: capabilities.keywords.has("PIPELINING"), dsn: capabilities.keywords.has("DSN") };
}

async function ehlo(connection: SmtpConnection, options: SmtpOptions): Promise<Capabilities> {
  const reply = await connection.command(`EHLO ${options.heloName}`, "ehlo");
  if (reply.code === 250) return parseCapabilities(reply);
  if (reply.code >= 500 && reply.code < 600) {
    // Pre-ESMTP relays answer EHLO with 5xx; HELO gives a session without extensions.
    await connection.expect(`HELO ${options.heloName}`, 250, "ehlo");
    return { keywords: new Set(), authMechanisms: new Set() };
  }
  throw new SmtpFailed(replyFailure(reply, "ehlo", "EHLO"));
}

async function authenticate(connection: SmtpConnection, options: SmtpOptions, capabilities: Capabilities): Promise<void> {
  const user = options.user!;
  const pass = options.pass ?? "";
  if (capabilities.authMechanisms.has("PLAIN")) {
    await connection.expect(`AUTH PLAIN ${base64(`\0${user}\0${pass}`)}`, 235, "auth", "AUTH PLAIN");
  } else if (capabilities.authMechanisms.has("LOGIN")) {
    await connection.expect("AUTH LOGIN", 334, "auth");
    await connection.expect(base64(user), 334, "auth", "AUTH LOGIN (username)");
    await connection.expect(base64(pass), 235, "auth", "AUTH LOGIN (password)");
  } else {
    throw new SmtpFailed({
      kind: "auth",
      stage: "auth",
      command: "EHLO",
      message: "SMTP_USER is set but the server offers neither AUTH PLAIN nor AUTH LOGIN",
    });
  }
}
