/**
 * A throwaway PostgreSQL server for the tests, from Debian's PostgreSQL 15 server binaries
 * (`/usr/lib/postgresql/15/bin`, package `postgresql-15`; `PG_BIN` overrides the folder): `initdb` into a fresh
 * temporary folder, `postgres` on a free loopback port, password authentication (so the password in the URL is a
 * real secret the tests can look for), and everything removed at the end. `initdb` and `postgres` refuse to run
 * as root: as root they run as the `postgres` user (`runuser`), in a folder that user owns.
 *
 * Plain promises, so that vitest's global setup (one server for a whole run) and a test's own scoped server
 * (one it stops and starts) use the same code.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Pg from "pg"

/** Where Debian installs the PostgreSQL 15 server binaries. */
export const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin"

/** The superuser of the test servers. */
export const PG_USER = "axon"

/** A running (or stopped) test server. */
export interface PostgresServer {
  readonly port: number
  /** The superuser's password (a secret the tests look for in logs and answers). */
  readonly password: string
  /** The URL of `database` on this server. */
  readonly urlFor: (database: string) => string
  /** Stops the server (fast shutdown), keeping its data. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port and data. */
  readonly start: () => Promise<void>
  /** Stops it and removes its folder. */
  readonly destroy: () => Promise<void>
}

const asRoot = typeof process.getuid === "function" && process.getuid() === 0

/** Runs a PostgreSQL binary, as the `postgres` user when we are root. */
const command = (binary: string, args: ReadonlyArray<string>): [string, Array<string>] =>
  asRoot
    ? ["runuser", ["-u", "postgres", "--", Path.join(PG_BIN, binary), ...args]]
    : [Path.join(PG_BIN, binary), [...args]]

/** A free loopback port. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = Net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

// Unref'd: a pending wait never keeps the test runner's process alive.
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref())

/** Creates the folder, runs `initdb` and starts the server; resolves when it accepts connections. */
export const startPostgresServer = async (): Promise<PostgresServer> => {
  if (!Fs.existsSync(Path.join(PG_BIN, "postgres"))) {
    throw new Error(
      `PostgreSQL server binaries not found in ${PG_BIN}: install Debian's postgresql-15 (or set PG_BIN)`
    )
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "axon-pg-"))
  const data = Path.join(dir, "data")
  const password = Crypto.randomBytes(18).toString("base64url")
  Fs.writeFileSync(Path.join(dir, "pw"), password + "\n")
  if (asRoot) {
    const uid = Number(ChildProcess.execFileSync("id", ["-u", "postgres"]).toString().trim())
    const gid = Number(ChildProcess.execFileSync("id", ["-g", "postgres"]).toString().trim())
    Fs.chownSync(dir, uid, gid)
    Fs.chownSync(Path.join(dir, "pw"), uid, gid)
  }
  Fs.chmodSync(dir, 0o700)
  const [initdb, initArgs] = command("initdb", [
    "-D",
    data,
    "-U",
    PG_USER,
    `--pwfile=${Path.join(dir, "pw")}`,
    "--auth=scram-sha-256",
    "-E",
    "UTF8",
    "--no-sync",
    "--no-instructions"
  ])
  ChildProcess.execFileSync(initdb, initArgs, { stdio: ["ignore", "ignore", "pipe"] })
  Fs.rmSync(Path.join(dir, "pw"))
  const port = await freePort()
  let child: ChildProcess.ChildProcess | undefined

  const start = async () => {
    const [postgres, args] = command("postgres", [
      "-D",
      data,
      "-p",
      String(port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      `unix_socket_directories=${dir}`,
      // A throwaway server: durability is not what these tests are about.
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=300",
      "-c",
      "shared_buffers=64MB"
    ])
    const log = Fs.openSync(Path.join(dir, "server.log"), "a")
    child = ChildProcess.spawn(postgres, args, { stdio: ["ignore", log, log] })
    Fs.closeSync(log)
    const started = Date.now()
    for (;;) {
      const client = new Pg.Client({ host: "127.0.0.1", port, user: PG_USER, password, database: "postgres" })
      client.on("error", () => {})
      try {
        await client.connect()
        await client.end()
        return
      } catch {
        await client.end().catch(() => {})
        if (child.exitCode !== null) {
          throw new Error(`postgres exited: ${Fs.readFileSync(Path.join(dir, "server.log"), "utf8").slice(-2000)}`)
        }
        if (Date.now() - started > 60_000) throw new Error("postgres did not start within 60 s")
        await sleep(50)
      }
    }
  }

  const stop = async () => {
    const running = child
    if (running === undefined || running.exitCode !== null) return
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()))
    // The postmaster's pid is the first line of postmaster.pid; SIGINT is a fast shutdown.
    const pidFile = Path.join(data, "postmaster.pid")
    const pid = Fs.existsSync(pidFile) ? Number(Fs.readFileSync(pidFile, "utf8").split("\n")[0]) : NaN
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, "SIGINT")
    else running.kill("SIGINT")
    await Promise.race([exited, sleep(30_000)])
    child = undefined
  }

  const destroy = async () => {
    await stop()
    Fs.rmSync(dir, { recursive: true, force: true })
  }

  await start()
  return {
    port,
    password,
    urlFor: (database) => `postgres://${PG_USER}:${password}@127.0.0.1:${port}/${database}`,
    stop,
    start,
    destroy
  }
}

/** Creates a fresh database on the server at `adminUrl` (any database of it); resolves with its URL. */
export const createDatabase = async (server: Pick<PostgresServer, "urlFor">): Promise<string> => {
  const name = `axon_${Crypto.randomBytes(6).toString("hex")}`
  const client = new Pg.Client({ connectionString: server.urlFor("postgres") })
  await client.connect()
  try {
    await client.query(`CREATE DATABASE ${name}`)
  } finally {
    await client.end()
  }
  return server.urlFor(name)
}

/** Drops a database made by `createDatabase`, closing whatever is still connected to it. */
export const dropDatabase = async (server: Pick<PostgresServer, "urlFor">, url: string): Promise<void> => {
  const name = new URL(url).pathname.slice(1)
  const client = new Pg.Client({ connectionString: server.urlFor("postgres") })
  client.on("error", () => {})
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  } finally {
    await client.end()
  }
}
