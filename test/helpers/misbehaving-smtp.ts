// A real SMTP server that misbehaves on purpose, for failures smtp-server cannot produce on demand:
// "drop-mid-data" speaks SMTP until the message body starts arriving, then waits until released and
// cuts the connection; "silent" accepts the connection and never says a word.
import { createServer, type Socket } from "node:net";

export type Misbehaviour = "drop-mid-data" | "silent";

export interface MisbehavingServer {
  port: number;
  /** Resolves when a client has started sending the message body (drop-mid-data). */
  dataStarted(): Promise<void>;
  /** Lets the server drop the connection (drop-mid-data). */
  release(): void;
  close(): Promise<void>;
}

export async function startMisbehavingSmtp(mode: Misbehaviour): Promise<MisbehavingServer> {
  const sockets = new Set<Socket>();
  let signalDataStarted!: () => void;
  let dataStarted = new Promise<void>((resolve) => (signalDataStarted = resolve));
  let release!: () => void;
  let released = new Promise<void>((resolve) => (release = resolve));

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    if (mode === "silent") return;
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
        const verb = line.split(" ")[0]!.toUpperCase();
        if (verb === "EHLO") socket.write("250-misbehaving.test\r\n250 8BITMIME\r\n");
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
