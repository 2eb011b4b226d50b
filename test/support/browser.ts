/**
 * A real browser for tests: Debian's Chromium, headless, installed by `scripts/ensure-chromium.sh` when missing
 * (the test fails loudly when it cannot be). `dumpDom` loads a page in a fresh profile with the network features a
 * browser uses on its own turned off, lets its scripts run, and gives the DOM as rendered.
 */
import * as Effect from "effect/Effect"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const ROOT = Path.resolve(import.meta.dirname, "../..")

/** The Chromium executable, installed first when missing. Throws with the script's message when it cannot be. */
export const ensureChromium = (): string =>
  execFileSync("bash", [Path.join(ROOT, "scripts/ensure-chromium.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"]
  }).trim()

/** The DOM of `url` once its scripts have run (Chromium's `--dump-dom` after a virtual-time budget). */
export const dumpDom = (chromium: string, url: string): Effect.Effect<string> =>
  Effect.acquireUseRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "chromium-"))),
    (profile) =>
      Effect.async<string>((resume) => {
        const child = spawn(chromium, [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
          `--user-data-dir=${profile}`,
          "--virtual-time-budget=5000",
          "--dump-dom",
          url
        ], { stdio: ["ignore", "pipe", "pipe"] })
        const out: Array<Buffer> = []
        const err: Array<Buffer> = []
        child.stdout.on("data", (b: Buffer) => out.push(b))
        child.stderr.on("data", (b: Buffer) => err.push(b))
        child.on("close", (code) =>
          resume(
            code === 0
              ? Effect.succeed(Buffer.concat(out).toString("utf8"))
              : Effect.dieMessage(`chromium exited ${code}: ${Buffer.concat(err).toString("utf8").slice(-2000)}`)
          ))
        return Effect.sync(() => child.kill("SIGKILL"))
      }),
    (profile) => Effect.sync(() => Fs.rmSync(profile, { recursive: true, force: true }))
  )
