// A broker that does what a test tells it to, on loopback: it answers CONNECT, SUBSCRIBE (granting
// what was asked) and PINGREQ as a broker must, and once a client has subscribed hands its connection
// to the test, which sends what no compliant broker would (QoS 2 to a QoS 1 subscriber, garbage
// statuses, topics nobody subscribed to).
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface RogueConnection {
  /** 1 for the first connection, 2 for the client's first reconnect, … */
  n: number;
  /** Writes a packet, waiting for the socket to drain if it must; false once the client is gone. */
  send(packet: Record<string, unknown>): Promise<boolean>;
  socket: net.Socket;
}

export interface RogueBroker {
  url: string;
  /** Packets the clients sent, by command (`pubrec`, `puback`, …). */
  received: Map<string, number>;
  close(): Promise<void>;
}

export async function startRogueBroker(
  onSubscribed: (c: RogueConnection) => Promise<void>,
): Promise<RogueBroker> {
  const received = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const n = ++connections;
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = async (packet: Record<string, unknown>): Promise<boolean> => {
      if (socket.destroyed) return false;
      if (!socket.write(mqttPacket.generate(packet as unknown as Packet))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            socket.off('drain', done);
            socket.off('close', done);
            resolve();
          };
          socket.on('drain', done);
          socket.on('close', done);
        });
      }
      return !socket.destroyed;
    };
    parser.on('packet', (p: Packet) => {
      received.set(p.cmd, (received.get(p.cmd) ?? 0) + 1);
      if (p.cmd === 'connect') void send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      else if (p.cmd === 'pingreq') void send({ cmd: 'pingresp' });
      else if (p.cmd === 'subscribe') {
        void send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map((s) => s.qos) }).then(
          () => onSubscribed({ n, send, socket }),
        );
      }
    });
    socket.on('data', (chunk) => parser.parse(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
