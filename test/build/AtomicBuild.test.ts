/**
 * `node scripts/build.mjs` (`pnpm build`, the first step of `pnpm start`, `pnpm start:axon` and `pnpm neuron`) run
 * by many processes at once, while others load the bundles: each file of `dist/` is renamed into place whole, so a
 * reader never gets a partial bundle; and a `dist/` already built from the current sources is not built again.
 * Each test works in a copy of the project (as a fresh clone has it: no `dist/`), never on the `dist/` that other
 * test files are running.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { entryPoints, root } from "../../scripts/build.mjs"
import { projectCopy, runNode } from "../support/process.js"

/** `node scripts/build.mjs` (with `--force`: always build) in the copy; dies unless it exits 0. */
const buildIn = (copy: string, force = false) =>
  Effect.flatMap(
    runNode(["scripts/build.mjs", ...(force ? ["--force"] : [])], {}, { cwd: copy }),
    (result) => result.code === 0 ? Effect.void : Effect.dieMessage(`build failed: ${result.code} ${result.stderr}`)
  )

/** The bundles of `entryPoints` and their source maps: what a build writes. */
const outputs = Object.keys(entryPoints).flatMap((name) => [`${name}.js`, `${name}.js.map`])

/** The first lines of a bundle: the stamp naming the digest of its sources. */
const stampOf = (file: string) => /sources sha256:([0-9a-f]{64})/.exec(Fs.readFileSync(file, "utf8").slice(0, 300))?.[1]

/** Every file esbuild reads to bundle `entries` in `copy`, as the build does it (packages stay external). */
const inputsOf = (copy: string, entries: Record<string, string>) =>
  Effect.promise(async () => {
    const esbuild = await import("esbuild")
    const result = await esbuild.build({
      absWorkingDir: copy,
      entryPoints: entries,
      outdir: "unused",
      write: false,
      bundle: true,
      format: "esm",
      platform: "node",
      packages: "external",
      metafile: true,
      logLevel: "silent"
    })
    return Object.keys(result.metafile.inputs)
  })

describe("pnpm build, atomic", () => {
  it.scopedLive(
    "concurrent builds while readers load the bundle never yield a partial file: three forced builds at a time, " +
      "two rounds, while dist/axon.js and dist/neuron.js are read over and over and `node dist/neuron.js " +
      "--version` starts; every read is the whole bundle, every start exits 0, no temporary folder is left",
    () =>
      Effect.gen(function*() {
        const copy = yield* projectCopy
        yield* buildIn(copy)
        const dist = Path.join(copy, "dist")
        const watched = ["axon.js", "neuron.js"]
        const reference = new Map(watched.map((name) => [name, Fs.readFileSync(Path.join(dist, name))]))

        let reading = true
        let reads = 0
        const partial: Array<string> = []
        const reader = (async () => {
          while (reading) {
            for (const name of watched) {
              const content = await Fs.promises.readFile(Path.join(dist, name)).catch(() => Buffer.alloc(0))
              reads++
              if (!content.equals(reference.get(name)!)) partial.push(`${name}: ${content.length} bytes`)
            }
          }
        })()

        const builds = Effect.forEach(
          [1, 2],
          () => Effect.all([1, 2, 3].map(() => buildIn(copy, true)), { concurrency: "unbounded" }),
          { discard: true }
        )
        const starts = Effect.forEach(
          [1, 2, 3, 4],
          () => runNode(["dist/neuron.js", "--version"], {}, { cwd: copy }),
          { concurrency: 2 }
        )
        const [, started] = yield* Effect.all([builds, starts], { concurrency: "unbounded" })
        reading = false
        yield* Effect.promise(() => reader)

        assert.isAbove(reads, 12)
        // The build this replaced let esbuild write over the files in place: the same race saw empty and
        // half-written bundles (0 and 131 072 bytes) in each of two runs.
        assert.deepStrictEqual(partial, [], "a reader saw a partial bundle")
        for (const start of started) {
          assert.strictEqual(start.code, 0, start.stderr)
          assert.strictEqual(
            start.stdout.trim(),
            JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")).version
          )
        }
        assert.deepStrictEqual(Fs.readdirSync(dist).sort(), [...outputs].sort())
        assert.strictEqual(Fs.statSync(Path.join(dist, "neuron.js")).mode & 0o111, 0o111, "the bin stays executable")
      }),
    120_000
  )

  it.scopedLive(
    "a dist/ built from the current sources is not built again (the same files stay); a changed source, a missing " +
      "file or --force builds again; every input esbuild reads is in the digest",
    () =>
      Effect.gen(function*() {
        const copy = yield* projectCopy
        const dist = Path.join(copy, "dist")
        yield* buildIn(copy)
        const inode = (name: string) => Fs.statSync(Path.join(dist, name)).ino
        const first = new Map(outputs.map((name) => [name, inode(name)]))
        const digest = stampOf(Path.join(dist, "axon.js"))
        assert.match(digest ?? "", /^[0-9a-f]{64}$/)
        for (const name of Object.keys(entryPoints)) assert.strictEqual(stampOf(Path.join(dist, `${name}.js`)), digest)

        yield* buildIn(copy)
        assert.deepStrictEqual(new Map(outputs.map((name) => [name, inode(name)])), first, "up to date: not rebuilt")

        // A source changes: every bundle is built again, stamped with the new digest.
        Fs.appendFileSync(Path.join(copy, "src/registry/main.ts"), "\n// a change\n")
        yield* buildIn(copy)
        const changed = stampOf(Path.join(dist, "axon.js"))
        assert.notStrictEqual(changed, digest)
        for (const name of outputs) assert.notStrictEqual(inode(name), first.get(name), name)

        // A file missing (a half-deleted dist/): built again.
        Fs.rmSync(Path.join(dist, "main.js.map"))
        yield* buildIn(copy)
        assert.isTrue(Fs.existsSync(Path.join(dist, "main.js.map")))

        // --force builds even when up to date.
        const before = inode("neuron.js")
        yield* buildIn(copy, true)
        assert.notStrictEqual(inode("neuron.js"), before)
        assert.strictEqual(stampOf(Path.join(dist, "neuron.js")), changed)

        // The digest covers every file esbuild reads: each is under src/ (packages stay external).
        const inputs = yield* inputsOf(copy, { ...entryPoints })
        assert.isAbove(inputs.length, 20)
        assert.deepStrictEqual(inputs.filter((input) => !input.startsWith("src/")), [])
      }),
    120_000
  )

  it.scopedLive(
    "a bundle of an entry point outside src/ (the bench's baseline server, into dist/bench) is built again when a " +
      "file of its own folder changes, and its digest covers every input esbuild reads for it",
    () =>
      Effect.gen(function*() {
        const copy = yield* projectCopy
        Fs.cpSync(Path.join(root, "bench/handshake"), Path.join(copy, "bench/handshake"), { recursive: true })
        const { build } = yield* Effect.promise(() => import(pathToFileURL(Path.join(copy, "scripts/build.mjs")).href))
        const entry = { "server-baseline": "bench/handshake/server-baseline.ts" }
        const bundle = Path.join(copy, "dist/bench/server-baseline.js")
        const buildBench = Effect.promise(() => build({ entryPoints: entry, outdir: "dist/bench" }))
        yield* buildBench
        const first = { digest: stampOf(bundle), inode: Fs.statSync(bundle).ino }
        assert.match(first.digest ?? "", /^[0-9a-f]{64}$/)

        yield* buildBench
        assert.strictEqual(Fs.statSync(bundle).ino, first.inode, "up to date: not rebuilt")

        // A file the server imports from its own folder changes: built again (it once was not: a stale bundle).
        Fs.appendFileSync(Path.join(copy, "bench/handshake/child.ts"), "\n// a change\n")
        yield* buildBench
        assert.notStrictEqual(stampOf(bundle), first.digest)
        assert.notStrictEqual(Fs.statSync(bundle).ino, first.inode)

        const inputs = yield* inputsOf(copy, entry)
        assert.include(inputs, "bench/handshake/child.ts")
        assert.deepStrictEqual(
          inputs.filter((input) => !input.startsWith("src/") && !input.startsWith("bench/handshake/")),
          []
        )
      }),
    120_000
  )
})
