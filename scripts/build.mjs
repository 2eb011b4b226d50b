/**
 * `pnpm build` (and the first step of `pnpm start` / `pnpm start:axon` / `pnpm neuron`): bundles the entry points
 * with esbuild into `dist/` as ESM for Node 20, so the processes run under plain `node`: no tsx loader thread,
 * transpiled modules or tsx parent process in memory (the Neuron idles about 55 MiB smaller, and starts in about
 * half the time). Packages stay ordinary imports from node_modules (better-sqlite3's native module loads as usual);
 * source maps point stack traces at src/ when run with `node --enable-source-maps`. Plain JavaScript so that it
 * runs before anything is built.
 *
 * Many processes may run this at once (six `pnpm start:axon` started together, test files building in parallel)
 * while others already run the bundles. So a build never writes a file in place: esbuild's output is written into
 * a folder of this process's own (`dist/.build-<pid>-<random>/`), and each file is then renamed over its place in
 * `dist/`. A rename over a file is atomic on POSIX: a process opening `dist/axon.js` gets the old file or the new
 * one, whole, never a half-written one (a process that already runs keeps the file it read). Concurrent builds of
 * the same sources write the same bytes, so the last rename wins with nothing lost.
 *
 * A build is skipped when `dist/` already holds the bundles of the current sources: each bundle starts with a
 * comment naming the SHA-256 of everything that goes into it (every file under `src/`, the files of the folder of
 * an entry point outside `src/` (the bench's servers), this script, package.json, tsconfig.json, esbuild's version
 * and the entry points). Reading that is a few milliseconds; a stale or partial
 * `dist/` (a fresh clone has none) is built again. `--force` (or `build({ force: true })`) always builds.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root folder. */
export const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")

/** What `pnpm build` bundles: output name (in `dist/`) -> entry point, relative to the root. */
export const entryPoints = { main: "src/main.ts", axon: "src/registry/main.ts", neuron: "src/cli/bin.ts" }

const require = createRequire(import.meta.url)

/** Besides the files under `src/`, what the bundles depend on (relative to the root). */
const inputFiles = ["scripts/build.mjs", "package.json", "tsconfig.json"]

/** The first line of each bundle (after a hashbang) names the digest of what it was built from. */
const STAMP = "// built by scripts/build.mjs from sources sha256:"

/** Every file under `folder` (absolute), relative to the root, in a stable order. */
const filesUnder = (folder) =>
  Fs.readdirSync(folder, { withFileTypes: true })
    .flatMap((entry) => {
      const path = Path.join(folder, entry.name)
      return entry.isDirectory() ? filesUnder(path) : entry.isFile() ? [Path.relative(root, path)] : []
    })
    .sort()

/**
 * The SHA-256 of everything a build of `entries` reads: each file under `src/` and `inputFiles` (name and
 * content), esbuild's version and the entry points.
 */
export const sourceDigest = (entries = entryPoints) => {
  const hash = Crypto.createHash("sha256")
  const esbuildVersion = JSON.parse(Fs.readFileSync(require.resolve("esbuild/package.json"), "utf8")).version
  hash.update(`esbuild ${esbuildVersion}\n${JSON.stringify(Object.entries(entries).sort())}\n`)
  // An entry point outside src/ (the bench's servers, bundled into dist/bench) brings the files of its own folder.
  const entryFolders = [...new Set(Object.values(entries).map((entry) => Path.dirname(entry)))]
    .filter((folder) => folder !== "src" && !folder.startsWith("src/"))
    .flatMap((folder) => filesUnder(Path.join(root, folder)))
  for (const file of [...new Set([...filesUnder(Path.join(root, "src")), ...entryFolders, ...inputFiles])]) {
    const content = Fs.readFileSync(Path.join(root, file))
    hash.update(`${file}\0${content.length}\0`)
    hash.update(content)
  }
  return hash.digest("hex")
}

/** True when every bundle of `entries` and its source map are in `outdir` (absolute), stamped with `digest`. */
const upToDate = (outdir, entries, digest) =>
  Object.keys(entries).every((name) => {
    try {
      if (!Fs.statSync(Path.join(outdir, `${name}.js.map`)).isFile()) return false
      const head = Buffer.alloc(512)
      const fd = Fs.openSync(Path.join(outdir, `${name}.js`), "r")
      try {
        const read = Fs.readSync(fd, head, 0, head.length, 0)
        return head.subarray(0, read).toString("utf8").split("\n", 2).includes(STAMP + digest)
      } finally {
        Fs.closeSync(fd)
      }
    } catch {
      return false
    }
  })

/** Removes the temporary folders of builds whose process is gone (killed in the middle of a build). */
const removeAbandoned = (outdir) => {
  for (const entry of Fs.readdirSync(outdir)) {
    const match = /^\.build-(\d+)-[0-9a-f]+$/.exec(entry)
    if (match === null || Number(match[1]) === process.pid) continue
    try {
      process.kill(Number(match[1]), 0)
    } catch (error) {
      if (error.code === "ESRCH") Fs.rmSync(Path.join(outdir, entry), { recursive: true, force: true })
    }
  }
}

/**
 * Bundles `entryPoints` (output name -> entry point, relative to the root) into `outdir` (relative to the root),
 * unless it already holds them built from the current sources (`force`: build anyway); resolves with the absolute
 * output folder. The output must stay inside the repository: the bundles import packages from its node_modules.
 * Each file is written into a temporary folder in `outdir`, then renamed over its place: a reader never sees a
 * partial file.
 */
export const build = async (options = {}) => {
  const entries = options.entryPoints ?? entryPoints
  const outdir = Path.resolve(root, options.outdir ?? "dist")
  const digest = sourceDigest(entries)
  if (options.force !== true && upToDate(outdir, entries, digest)) return outdir
  // Loaded only to build: importing esbuild costs more than checking whether a build is needed.
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: entries,
    // The final folder, so that source map paths and `sourceMappingURL` comments are right; nothing is written
    // by esbuild itself (`write: false`).
    outdir,
    write: false,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    sourcemap: true,
    // No `keepNames`: it wraps every function and class of src/ in `__name(fn, "name")` (Object.defineProperty of
    // `name`), run each time a closure is made. On the handshake's path that measured 4-7 % more server CPU per
    // handshake (BENCHMARKS.md, issue 11). Without it only a top-level name that clashes across modules keeps
    // esbuild's suffix (`decode7`) as its `.name`; nothing reads those (Schema classes and services carry their
    // identifiers as strings), and stack traces are mapped to src/ by the source maps.
    keepNames: false,
    banner: { js: STAMP + digest },
    logLevel: "warning"
  })
  Fs.mkdirSync(outdir, { recursive: true })
  removeAbandoned(outdir)
  const staging = Path.join(outdir, `.build-${process.pid}-${Crypto.randomBytes(6).toString("hex")}`)
  Fs.mkdirSync(staging)
  try {
    // Source maps first and the `neuron` command last: a process that sees a new bundle finds its map, and the
    // command finds the bundles it loads (`neuron start` loads main.js, `neuron axon` axon.js) already in place.
    const order = (file) => (file.path.endsWith(".map") ? 0 : Path.basename(file.path) === "neuron.js" ? 2 : 1)
    const files = [...result.outputFiles].sort((a, b) => order(a) - order(b))
    for (const file of files) {
      const relative = Path.relative(outdir, file.path)
      const staged = Path.join(staging, relative.replaceAll(Path.sep, "__"))
      // Executable when it starts with a hashbang, as esbuild itself writes it (the package's `bin`).
      Fs.writeFileSync(staged, file.contents, {
        mode: file.contents[0] === 0x23 && file.contents[1] === 0x21 ? 0o755 : 0o644
      })
      Fs.mkdirSync(Path.dirname(file.path), { recursive: true })
      Fs.renameSync(staged, file.path)
    }
  } finally {
    Fs.rmSync(staging, { recursive: true, force: true })
  }
  return outdir
}

if (process.argv[1] !== undefined && Path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await build({ force: process.argv.includes("--force") })
}
