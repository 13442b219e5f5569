// A real SMTP server that misbehaves on purpose, for failures smtp-server cannot produce on demand:
// "drop-mid-data" speaks SMTP until the message body starts arriving, then waits until released and
// cuts the connection; "silent" accepts the connection and never says a word; "starttls-injection"
// answers STARTTLS with extra plaintext replies, as a man in the middle would (RFC 3207 §6);
// "trickle" starts a greeting and then sends one byte every 20 ms, never finishing the line;
// "data-policy" takes the whole message and answers the end of DATA by the first recipient's local
// part (data554-… → 554, data421-… → 421 and hang up, data421open-… → 421 without hanging up, after
// which it answers RSET and refuses anything else with 421, slow-… → 250 after 1 s, double-… → two 250s,
// straypart-… → half a stray "250" line right behind its "354", anything else → 250); it answers
// RCPT TO:<rcpt421-…> with 421 and hangs up;
// "flood" greets with 100 KB and no line end; "stray-reply" is data-policy, except that it sends a
// "250" right behind its "354", before the message has even been sent; "busy" greets with 421 and
// hangs up, as a relay over its connection limit does.
import { createServer, type Socket } from "node:net";

export type Misbehaviour = "drop-mid-data" | "silent" | "starttls-injection" | "trickle" | "data-policy" | "flood" | "stray-reply" | "busy";

export interface MisbehavingServer {
  port: number;
  /** Resolves when a client has started sending the message body (drop-mid-data). */
  dataStarted(): Promise<void>;
  /** Lets the server drop the connection (drop-mid-data). */
  release(): void;
  /** Every command line received, in order (passwords included: this server is a test fixture). */
  commands: string[];
  /** Connections open now, and the most open at once since resetPeak(). */
  connections: { open: number; peak: number };
  resetPeak(): void;
  close(): Promise<void>;
}

export async function startMisbehavingSmtp(mode: Misbehaviour): Promise<MisbehavingServer> {
  const sockets = new Set<Socket>();
  const commands: string[] = [];
  let signalDataStarted!: () => void;
  let dataStarted = new Promise<void>((resolve) => (signalDataStarted = resolve));
  let release!: () => void;
  let released = new Promise<void>((resolve) => (release = resolve));

  const connections = { open: 0, peak: 0 };
  const server = createServer((socket) => {
    sockets.add(socket);
    connections.open += 1;
    connections.peak = Math.max(connections.peak, connections.open);
    socket.on("close", () => {
      sockets.delete(socket);
      connections.open -= 1;
    });
    socket.on("error", () => {});
    if (mode === "silent") return;
    if (mode === "busy") return void socket.end("421 4.7.0 misbehaving.test Too many connections, try again later\r\n");
    if (mode === "flood") return void socket.write(`220-${"x".repeat(100_000)}`);
    if (mode === "data-policy" || mode === "stray-reply") return serveDataPolicy(socket, mode === "stray-reply");
    if (mode === "trickle") {
      socket.write("220-");
      const timer = setInterval(() => socket.write("x"), 20);
      socket.on("close", () => clearInterval(timer));
      return;
    }
    socket.write("220 misbehaving.test ESMTP\r\n");
    let inData = false;
    let buffer = "";
    socket.on("data", (chunk) => {
      if (inData) return;
      buffer += chunk.toString("latin1");
      let newline: number;
      while ((newline = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 2);
        commands.push(line);
        const verb = line.split(" ")[0]!.toUpperCase();
        if (verb === "EHLO") socket.write("250-misbehaving.test\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n");
        else if (verb === "STARTTLS" && mode === "starttls-injection") socket.write("220 go ahead\r\n250-injected.test\r\n250 AUTH PLAIN\r\n");
        else if (verb === "DATA") {
          socket.write("354 go ahead\r\n");
          inData = true;
          signalDataStarted();
          void released.then(() => socket.destroy());
          return;
        } else if (verb === "QUIT") socket.end("221 bye\r\n");
        else socket.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");

  return {
    port: address.port,
    commands,
    connections,
    resetPeak: () => void (connections.peak = connections.open),
    dataStarted: () => dataStarted,
    release: () => {
      release();
      // Re-arm for the next client.
      dataStarted = new Promise<void>((resolve) => (signalDataStarted = resolve));
      released = new Promise<void>((resolve) => (release = resolve));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The "data-policy" session: a plain relay that decides only at the end of DATA. */
function serveDataPolicy(socket: Socket, strayReply: boolean): void {
  socket.write("220 data-policy.test ESMTP\r\n");
  let buffer = "";
  let inData = false;
  let firstRecipient = "";
  let closing = false;
  socket.on("data", (chunk) => {
    buffer += chunk.toString("latin1");
    for (;;) {
      if (inData) {
        const end = buffer.indexOf("\r\n.\r\n");
        if (end < 0) return;
        buffer = buffer.slice(end + 5);
        inData = false;
        const local = firstRecipient.split("@")[0] ?? "";
        firstRecipient = "";
        if (local.startsWith("data554-")) socket.write("554 5.6.0 Message content rejected\r\n");
        else if (local.startsWith("data421-")) return void socket.end("421 4.3.2 Shutting down, closing connection\r\n");
        else if (local.startsWith("data421open-")) {
          closing = true; // says it is closing, but leaves that to the client
          socket.write("421 4.3.2 Shutting down\r\n");
        } else if (local.startsWith("slow-")) setTimeout(() => socket.write("250 2.0.0 Ok: queued\r\n"), 1000);
        else if (local.startsWith("double-")) socket.write("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued again\r\n");
        else socket.write("250 2.0.0 Ok: queued\r\n");
        continue;
      }
      const newline = buffer.indexOf("\r\n");
      if (newline < 0) return;
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 2);
      const verb = line.split(/[ :]/)[0]!.toUpperCase();
      if (closing && verb !== "RSET" && verb !== "QUIT") socket.write("421 4.3.2 Shutting down\r\n");
      else if (verb === "EHLO") socket.write("250-data-policy.test\r\n250 8BITMIME\r\n");
      else if (verb === "RCPT") {
        const recipient = /<([^>]*)>/.exec(line)?.[1] ?? "";
        if (recipient.startsWith("rcpt421-")) return void socket.end("421 4.3.2 Too busy, closing connection\r\n");
        firstRecipient ||= recipient;
        socket.write("250 2.1.5 Ok\r\n");
      } else if (verb === "DATA") {
        inData = true;
        buffer = "\r\n" + buffer; // the terminator may follow an empty body directly
        const stray = strayReply ? "250 2.0.0 Ok: queued as STRAY\r\n" : firstRecipient.startsWith("straypart-") ? "250 2.0.0 Ok: que" : "";
        socket.write(`354 End data with <CR><LF>.<CR><LF>\r\n${stray}`);
      } else if (verb === "QUIT") return void socket.end("221 Bye\r\n");
      else socket.write("250 Ok\r\n");
    }
  });
}
