// The far-away relay of the benchmark, in its own process so its CPU time is not the client's: an SMTP
// sink (smtp-server: PIPELINING, 8BITMIME; it counts what it receives and keeps nothing) behind a TCP
// proxy that adds a fixed round-trip time. The proxy writes each chunk half the RTT after reading it, in
// order, without throttling, and counts round trips: each time the client sends again after the server
// said something. A connection costs one round trip before the greeting (the proxy reaches the sink half
// the RTT after the client connects, and the greeting takes the other half back), and the sink greets
// then, as a submission relay (Postfix's smtpd, a hosted relay's endpoint) does; smtp-server on its own
// holds every greeting back 100 ms to catch clients that talk first, a check for an inbound MX that no
// round trip explains: the IPC message { greetingHoldMs } puts such a hold back, to measure what it costs.
// Driven over IPC by run.mjs: "stats" answers the counters, "reset" zeroes them.
import { Socket, createServer } from "node:net";
import { SMTPServer } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";

const rttMs = Number(process.argv[2] ?? 10);
let greetingHoldMs = 0;
// smtp-server's init() waits 100 ms before it greets (and before the connection limit matters here, which
// the sink does not set): this one waits greetingHoldMs.
SMTPConnection.prototype.init = function () {
  this._setListeners(() => (greetingHoldMs > 0 ? setTimeout(() => this.connectionReady(), greetingHoldMs).unref() : this.connectionReady()));
};
const stats = { connections: 0, roundTrips: 0, mails: 0, recipients: 0, firstMailAt: 0, lastMailAt: 0 };

const sink = new SMTPServer({
  authOptional: true,
  disableReverseLookup: true,
  hideSTARTTLS: true,
  logger: false,
  size: 25 * 1024 * 1024,
  onData(stream, session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => {
      stats.mails += 1;
      stats.recipients += session.envelope.rcptTo.length;
      stats.lastMailAt = Date.now();
      stats.firstMailAt ||= stats.lastMailAt;
      callback(null, "queued");
    });
  },
});
sink.on("error", () => {});
// No Nagle anywhere on the relay's side: its small replies go out at once, so the only delay a client sees
// is the round trip the proxy adds (with Nagle, a reply written in pieces waits for the peer's delayed ACK,
// ~40 ms, which would swamp the 10 ms under test and hit pooled and pipelined clients hardest).
sink.server.on("connection", (socket) => socket.setNoDelay(true));
await new Promise((resolve) => sink.listen(0, "127.0.0.1", resolve));

const oneWay = rttMs / 2;
const later = (fn) => (oneWay > 0 ? setTimeout(fn, oneWay) : setImmediate(fn));
const proxy = createServer((client) => {
  stats.connections += 1;
  client.pause(); // until the sink is reached: what the client sends meanwhile is still on its way
  const server = new Socket();
  later(() => server.connect(sink.server.address().port, "127.0.0.1", () => client.resume()));
  client.setNoDelay(true);
  server.setNoDelay(true);
  let serverSpokeLast = true; // the greeting comes first
  client.on("data", (chunk) => {
    if (serverSpokeLast) stats.roundTrips += 1;
    serverSpokeLast = false;
    later(() => server.write(chunk));
  });
  server.on("data", (chunk) => {
    serverSpokeLast = true;
    later(() => client.write(chunk));
  });
  client.on("end", () => later(() => server.end()));
  server.on("end", () => later(() => client.end()));
  for (const socket of [client, server]) socket.on("error", () => (client.destroy(), server.destroy()));
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));

process.on("message", (message) => {
  if (typeof message === "object") return void (greetingHoldMs = message.greetingHoldMs); // no answer
  if (message === "reset") Object.assign(stats, { connections: 0, roundTrips: 0, mails: 0, recipients: 0, firstMailAt: 0, lastMailAt: 0 });
  process.send({ ...stats, cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000 });
});
process.on("disconnect", () => process.exit(0));
process.send({ port: proxy.address().port });
