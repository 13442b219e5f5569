// Two relays that tell a pipelining client from a lock-step one, with no timing to guess at:
// "pipelining-only" offers PIPELINING and answers nothing until DATA (or QUIT) has arrived: not MAIL FROM,
// not RCPT TO, and not the final dot of the message before, so a client waiting for any of those replies
// before its next command would wait forever; "strict-lockstep" does not offer PIPELINING and answers
// every command after 50 ms, ending the session with 554 if the next command arrives before that. Both
// take every message (recipients whose local part starts with "refuse-" get 550; at a "drop-" one the
// connection is cut; a "refusedrop-" one gets 550 and the connection is cut at the end of the message
// that follows; at a "closedown-" one the relay answers 421 to everything but RSET and QUIT; a message whose first recipient is "rejectmsg-…" is refused at its final dot with
// 554) and record what they received: the commands, each message's recipients, and per session the
// messages taken, the commands, what was written into a DATA left open when the connection closed, and
// the round trips (each time the client wrote again after the relay had spoken). A message whose first recipient is "double-…" has its final dot answered twice (and, by
// pipelining-only, what was said behind that dot answered one reply every 100 ms, so the client has no
// unread reply to go by); pipelining-only holds the reply to a "slow-…" one's final dot, and the replies
// behind it, for 1 s.
import { createServer, type Socket } from "node:net";

export type PipeliningMode = "pipelining-only" | "strict-lockstep";

export interface PipeliningRelay {
  port: number;
  /** Command lines received, in order. */
  commands: string[];
  /** The accepted recipients of each message taken, in order. */
  messages: string[][];
  /** Each connection: the accepted recipients of the messages it took, its commands and its round trips. */
  sessions: { messages: string[][]; commands: string[]; unterminated: string[]; roundTrips: number }[];
  close(): Promise<void>;
}

export async function startPipeliningRelay(mode: PipeliningMode): Promise<PipeliningRelay> {
  const sockets = new Set<Socket>();
  const relay: PipeliningRelay = { port: 0, commands: [], messages: [], sessions: [], close: async () => {} };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    serve(socket, mode, relay);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  relay.port = address.port;
  relay.close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return relay;
}

function serve(socket: Socket, mode: PipeliningMode, relay: PipeliningRelay): void {
  const session = { messages: [] as string[][], commands: [] as string[], unterminated: [] as string[], roundTrips: 0 };
  relay.sessions.push(session);
  let spokeLast = false;
  const write = socket.write.bind(socket);
  socket.write = ((text: string) => ((spokeLast = true), write(text))) as typeof socket.write;
  socket.write("220 pipelining.test ESMTP\r\n");
  let buffer = "";
  let inData = false;
  let held: string[] = []; // pipelining-only: replies waiting for DATA
  let answering: ReturnType<typeof setTimeout> | undefined; // strict-lockstep: a reply on its way
  let recipients: string[] = [];
  // After a "closedown-" recipient: 421 to it and to every later command but RSET and QUIT, as Exim's
  // smtp_closedown() answers whatever a client pipelined behind the command it shut down at.
  let closing = false;
  let dropAtEnd = false;
  let holdFlush = false; // pipelining-only: the held replies include a "slow-" message's final dot
  let trickleFrom: number | undefined; // pipelining-only: the held replies after a doubled one go out 100 ms apart
  // Content of a message whose DATA was still open when the connection closed (what the client wrote into it).
  socket.on("close", () => {
    if (inData) session.unterminated.push(buffer);
  });

  const reply = (text: string) => {
    if (mode === "pipelining-only") return void held.push(text);
    if (answering) return void socket.end("554 5.5.0 a command came before the reply to the last one; PIPELINING was not offered\r\n");
    answering = setTimeout(() => {
      answering = undefined;
      socket.write(text);
    }, 50);
  };
  /** Writes the held replies; returns how long until the last of them is written. */
  const flush = (): number => {
    const [now, later] = trickleFrom === undefined ? [held, []] : [held.slice(0, trickleFrom), held.slice(trickleFrom)];
    const delay = holdFlush ? 1000 : 0;
    held = [];
    trickleFrom = undefined;
    holdFlush = false;
    const text = now.join("");
    if (delay === 0) socket.write(text);
    else setTimeout(() => socket.write(text), delay);
    // One reply at a time, so that the client has read what came before when the next one arrives.
    later.forEach((line, i) => setTimeout(() => socket.write(line), delay + 100 * (i + 1)));
    return delay + 100 * later.length;
  };

  socket.on("data", (chunk) => {
    if (spokeLast) session.roundTrips += 1;
    spokeLast = false;
    buffer += chunk.toString("latin1");
    for (;;) {
      if (inData) {
        const end = buffer.indexOf("\r\n.\r\n");
        if (end < 0) return;
        buffer = buffer.slice(end + 5);
        inData = false;
        if (dropAtEnd) return void socket.destroy();
        const rejected = recipients[0]?.startsWith("rejectmsg-");
        if (!rejected) {
          relay.messages.push(recipients);
          session.messages.push(recipients);
        }
        const [double, slow] = [recipients[0]?.startsWith("double-"), recipients[0]?.startsWith("slow-")];
        recipients = [];
        if (slow && mode === "pipelining-only") holdFlush = true;
        reply(rejected ? "554 5.6.0 Message content rejected\r\n" : double ? "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued again\r\n" : "250 2.0.0 Ok: queued\r\n");
        if (double && mode === "pipelining-only") trickleFrom = held.length;
        continue;
      }
      const newline = buffer.indexOf("\r\n");
      if (newline < 0) return;
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 2);
      relay.commands.push(line);
      session.commands.push(line);
      const verb = line.split(/[ :]/)[0]!.toUpperCase();
      if (closing && verb !== "RSET" && verb !== "QUIT") {
        reply("421 4.3.2 Service shutting down\r\n");
        if (verb === "DATA" && mode === "pipelining-only") flush();
        continue;
      }
      if (verb === "EHLO") {
        const ehlo = mode === "pipelining-only" ? "250-pipelining.test\r\n250 PIPELINING\r\n" : "250-strict.test\r\n250 8BITMIME\r\n";
        if (mode === "pipelining-only") socket.write(ehlo);
        else reply(ehlo);
      } else if (verb === "RCPT") {
        const address = /<([^>]*)>/.exec(line)?.[1] ?? "";
        if (address.startsWith("drop-")) return void socket.destroy();
        if (address.startsWith("closedown-")) {
          closing = true;
          reply("421 4.3.2 Service shutting down\r\n");
          continue;
        }
        if (address.startsWith("refusedrop-")) dropAtEnd = true;
        if (address.startsWith("refuse")) reply("550 5.1.1 No such user\r\n");
        else {
          recipients.push(address);
          reply("250 2.1.5 Ok\r\n");
        }
      } else if (verb === "DATA") {
        inData = true;
        buffer = "\r\n" + buffer; // the terminator may follow an empty body directly
        if (mode === "pipelining-only") {
          held.push("354 End data with <CR><LF>.<CR><LF>\r\n");
          flush();
        } else reply("354 End data with <CR><LF>.<CR><LF>\r\n");
      } else if (verb === "QUIT") {
        if (mode === "pipelining-only") {
          held.push("221 Bye\r\n");
          const last = flush();
          return void (last === 0 ? socket.end() : setTimeout(() => socket.end(), last));
        }
        socket.write("221 Bye\r\n");
        return void socket.end();
      } else reply("250 Ok\r\n");
    }
  });
}
