// The relay the workerd tests deliver to by default: a TCP proxy in front of the plain inbox that can be
// switched, while the real local queue keeps delivering, between "open" (every byte passed through),
// "chaos" (every byte passed to a second inbox that fails about a third of all attempts at random),
// "tempfail" (a relay that greets and then answers 451 to every MAIL FROM), "down" (connections cut
// at once, as with a wrong SMTP_HOST or port) and "hold" (connections accepted and never answered, so
// an attempt is caught in the middle). It is how an outage longer than every queue retry, and its end,
// or a crash in the middle of an attempt, are produced on demand.
import { connect, createServer, type Socket } from "node:net";

export type GateMode = "open" | "chaos" | "tempfail" | "down" | "hold";

export interface RelayGate {
  port: number;
  mode: GateMode;
  /** Connections accepted per mode since the start. */
  connections: Record<GateMode, number>;
  /** Resolves with the mode of the next connection the gate accepts. */
  nextConnection(): Promise<GateMode>;
  close(): Promise<void>;
}

/** `targetPort` is the relay behind "open"; `chaosPort`, if given, the one behind "chaos". */
export async function startRelayGate(targetPort: number, chaosPort?: number): Promise<RelayGate> {
  const sockets = new Set<Socket>();
  const waiting: ((mode: GateMode) => void)[] = [];
  const gate: RelayGate = {
    port: 0,
    mode: "open",
    connections: { open: 0, chaos: 0, tempfail: 0, down: 0, hold: 0 },
    nextConnection: () => new Promise((resolve) => waiting.push(resolve)),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  };
  const server = createServer((client) => {
    track(client);
    gate.connections[gate.mode] += 1;
    for (const resolve of waiting.splice(0)) resolve(gate.mode);
    if (gate.mode === "hold") return;
    if (gate.mode === "down") return void client.destroy();
    if (gate.mode === "tempfail") return serveTempfail(client);
    const upstream = connect(gate.mode === "chaos" && chaosPort ? chaosPort : targetPort, "127.0.0.1");
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("gate has no port");
  gate.port = address.port;
  return gate;
}

function serveTempfail(socket: Socket): void {
  socket.write("220 gate.test ESMTP\r\n");
  let buffer = "";
  socket.on("data", (chunk) => {
    buffer += chunk.toString("latin1");
    let newline: number;
    while ((newline = buffer.indexOf("\r\n")) >= 0) {
      const verb = buffer.slice(0, newline).split(/[ :]/)[0]!.toUpperCase();
      buffer = buffer.slice(newline + 2);
      if (verb === "EHLO" || verb === "HELO") socket.write("250 gate.test\r\n");
      else if (verb === "MAIL") socket.write("451 4.3.0 Relay temporarily unavailable, try again later\r\n");
      else if (verb === "QUIT") return void socket.end("221 Bye\r\n");
      else socket.write("250 Ok\r\n");
    }
  });
}
