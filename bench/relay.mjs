// The far-away relay of the benchmark, in its own process so its CPU time is not the client's: an SMTP
// sink (smtp-server: PIPELINING, 8BITMIME; it counts what it receives and keeps nothing) behind a TCP
// proxy that adds a fixed round-trip time. The proxy writes each chunk half the RTT after reading it, in
// order, without throttling, and counts round trips: each time the client sends again after the server
// said something. Driven over IPC by run.mjs: "stats" answers the counters, "reset" zeroes them.
import { connect, createServer } from "node:net";
import { SMTPServer } from "smtp-server";

const rttMs = Number(process.argv[2] ?? 10);
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
  const server = connect(sink.server.address().port, "127.0.0.1");
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
  if (message === "reset") Object.assign(stats, { connections: 0, roundTrips: 0, mails: 0, recipients: 0, firstMailAt: 0, lastMailAt: 0 });
  process.send({ ...stats, cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000 });
});
process.on("disconnect", () => process.exit(0));
process.send({ port: proxy.address().port });
