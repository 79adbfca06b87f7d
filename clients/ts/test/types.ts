// Type-checked by `npm run build` (tsc -p test/tsconfig.json, no output) against the
// emitted dist/*.d.ts through the package's own name, as a user's code would be: the
// README example and the typed shapes.
import {
  connect,
  ConflictError,
  type BatchOp,
  type Client,
  type Database,
  DocDBError,
  NotFoundError,
  type OpResult,
  type ScanPage,
  type Stats,
  type TcpConnectOptions,
} from 'docdb-client';

export async function readmeExample(socket: string): Promise<void> {
  const client = await connect(socket); // the README has '/tmp/docdb.sock'
  const db = await client.openDb('app');
  await db.createCollection('users');
  await db.create('users', 1n, { name: 'Ada', langs: ['en'] });
  await db.patch('users', 1n, [{ op: 'add', path: '/langs/-', value: 'fr' }]);
  console.log(await db.read('users', 1n));
  for await (const { id, doc } of db.scanAll('users')) console.log(id, doc);
  try {
    await db.read('users', 2n);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  await client.close();
}

export async function shapes(client: Client, db: Database): Promise<void> {
  const id: bigint = db.id;
  const user = await db.read<{ name: string }>('users', id);
  const name: string = user.name;
  const ops: BatchOp[] = [
    { op: 'create', collection: 'users', id: 1n, doc: { name } },
    { op: 'patch', id: 1n, patch: [{ op: 'test', path: '/name', value: name }] },
    { op: 'read', id: 1n },
  ];
  const results: OpResult[] = await db.batch(ops);
  const status: number = results[0]!.status;
  const err: DocDBError | undefined = results[1]!.error;
  if (err instanceof ConflictError) console.log(err.serverMessage, err.opIndex, status);
  const page: ScanPage<{ n: number }> = await db.scan('c', { startAfter: 0n, limit: 10 });
  const next: bigint | null = page.next;
  const stats: Stats = await client.stats();
  const total: bigint = stats.totalDbs + (next ?? 0n);
  console.log(total, await client.listDbs(), await db.healAll());
  // @ts-expect-error ids are bigint
  await db.read('users', 'one');
}

export async function overTcp(ca: string, token: string): Promise<void> {
  const tls = await connect({ host: 'db.example', port: 7070, tls: { ca }, token, maxInFlight: 32 });
  const system = await connect({ host: 'db.example', port: 7070, tls: true, token });
  const plain = await connect({ host: '127.0.0.1', port: 7070, insecureTcp: true, token });
  const opts: TcpConnectOptions = { host: '::1', port: 1, tls: { ca: [ca], servername: 'localhost' } };
  const address: string = (await connect(opts)).address;
  console.log(address, tls.socketPath, system.connected, plain.inFlight);
  // @ts-expect-error TCP needs tls or insecureTcp
  await connect({ host: 'db.example', port: 7070, token });
  // @ts-expect-error not both
  await connect({ host: '127.0.0.1', port: 7070, tls: true, insecureTcp: true });
  // @ts-expect-error the Unix form takes a path
  await connect({ path: '/tmp/docdb.sock' });
}
