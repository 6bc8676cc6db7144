/**
 * Platforms (`os/architecture[/variant]`) and picking one manifest out of an index.
 * Pure functions. Matching follows containerd's rules where they matter for pulls:
 * os and architecture must be equal (after normalising aliases such as x86_64 → amd64),
 * then the variant: exact beats an entry without variant; arm64 without variant is v8;
 * arm/vN also accepts older arm variants as a fallback (v7 runs v6 and v5 binaries).
 */
import { PlatformNotFoundError, UsageError } from '../errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** A platform object as it appears in an index entry or a config. */
export interface PlatformJson {
  os?: unknown;
  architecture?: unknown;
  variant?: unknown;
}

/** An index entry as far as platform selection is concerned. */
export interface PlatformCandidate {
  platform?: PlatformJson;
  annotations?: Record<string, string>;
}

const ARCH_ALIASES: Readonly<Record<string, Platform['architecture']>> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  i386: '386',
  i686: '386',
  armhf: 'arm',
  armel: 'arm',
};

/**
 * Parses `os/arch[/variant]`, normalising aliases.
 *
 * @example
 * ```ts
 * parsePlatform('linux/aarch64'); // { os: 'linux', architecture: 'arm64' }
 * parsePlatform('linux/armhf');   // { os: 'linux', architecture: 'arm', variant: 'v7' }
 * ```
 */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => !/^[A-Za-z0-9._-]+$/.test(part))) {
    throw new UsageError(`invalid platform "${text}": expected os/architecture[/variant]`);
  }
  const [os = '', architecture = '', variant] = parts;
  return normalizePlatform({ os, architecture, ...(variant === undefined ? {} : { variant }) });
}

/** Lowercases and maps architecture aliases; arm64 `8` → `v8`, armhf → arm/v7, armel → arm/v6. */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === 'macos' ? 'darwin' : platform.os.toLowerCase();
  const rawArch = platform.architecture.toLowerCase();
  const architecture = ARCH_ALIASES[rawArch] ?? rawArch;
  let variant = platform.variant?.toLowerCase();
  if (variant === undefined && rawArch === 'armhf') variant = 'v7';
  if (variant === undefined && rawArch === 'armel') variant = 'v6';
  if (variant !== undefined && /^\d+$/.test(variant) && (architecture === 'arm' || architecture === 'arm64')) {
    variant = `v${variant}`;
  }
  return { os, architecture, ...(variant === undefined || variant === '' ? {} : { variant }) };
}

/**
 * `os/arch[/variant]`.
 *
 * @example
 * ```ts
 * formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }); // 'linux/arm/v7'
 * ```
 */
export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant === undefined ? '' : `/${platform.variant}`}`;
}

/** The platform this process runs on, as a Linux container platform. */
export function defaultPlatform(): Platform {
  return hostPlatform(process.arch, armVersion());
}

/** `process.arch` (and the arm version node was built for) as an OCI platform. */
export function hostPlatform(arch: string, armVersionNumber?: string): Platform {
  switch (arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm':
      return { os: 'linux', architecture: 'arm', variant: `v${armVersionNumber ?? '7'}` };
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: 'ppc64le' };
    case 'mipsel':
      return { os: 'linux', architecture: 'mipsle' };
    case 'mips64el':
      return { os: 'linux', architecture: 'mips64le' };
    default:
      return { os: 'linux', architecture: arch };
  }
}

function armVersion(): string | undefined {
  const variables = process.config.variables as unknown as Record<string, unknown>;
  const value = variables['arm_version'];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

/** A platform object from JSON, or undefined when it lacks os or architecture. */
export function platformFromJson(json: PlatformJson | undefined): Platform | undefined {
  if (json === undefined || typeof json.os !== 'string' || typeof json.architecture !== 'string') {
    return undefined;
  }
  const variant = typeof json.variant === 'string' && json.variant !== '' ? json.variant : undefined;
  return normalizePlatform({
    os: json.os,
    architecture: json.architecture,
    ...(variant === undefined ? {} : { variant }),
  });
}

/**
 * How well `candidate` serves `wanted`: undefined when it does not, higher is better.
 * Exact variant 3, variant-less entry 2, any variant for a variant-less wish 1, older arm
 * variants 0 to −N (closer is better).
 */
export function platformScore(wanted: Platform, candidate: Platform): number | undefined {
  if (wanted.os !== candidate.os || wanted.architecture !== candidate.architecture) return undefined;
  const want = effectiveVariant(wanted);
  const have = effectiveVariant(candidate);
  if (want === have) return 3;
  if (have === undefined) return 2;
  if (want === undefined) return 1;
  if (wanted.architecture === 'arm') {
    const wantN = armNumber(want);
    const haveN = armNumber(have);
    if (wantN !== undefined && haveN !== undefined && haveN < wantN) return haveN - wantN + 1;
  }
  return undefined;
}

export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  return platformScore(wanted, candidate) !== undefined;
}

/** Attestation manifests and other non-images carry the platform `unknown/unknown`. */
export function isUnknownPlatform(candidate: PlatformCandidate): boolean {
  const platform = candidate.platform;
  if (platform?.os === 'unknown' && platform.architecture === 'unknown') return true;
  return candidate.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

/**
 * The best entry of `candidates` for `wanted`; ties keep the index order (first wins).
 * Entries without a platform or of unknown platform are skipped.
 * @throws {PlatformNotFoundError} listing the platforms the index has.
 */
export function selectPlatform<T extends PlatformCandidate>(candidates: readonly T[], wanted: Platform): { entry: T; platform: Platform } {
  let best: { entry: T; platform: Platform; score: number } | undefined;
  const available: string[] = [];
  for (const entry of candidates) {
    if (isUnknownPlatform(entry)) continue;
    const platform = platformFromJson(entry.platform);
    if (platform === undefined) continue;
    available.push(formatPlatform(platform));
    const score = platformScore(wanted, platform);
    if (score !== undefined && (best === undefined || score > best.score)) best = { entry, platform, score };
  }
  if (best === undefined) throw new PlatformNotFoundError(formatPlatform(wanted), available);
  return { entry: best.entry, platform: best.platform };
}

function effectiveVariant(platform: Platform): string | undefined {
  // arm64 images are v8 unless they say otherwise.
  if (platform.architecture === 'arm64' && platform.variant === undefined) return 'v8';
  return platform.variant;
}

function armNumber(variant: string): number | undefined {
  const match = /^v(\d+)$/.exec(variant);
  return match === null ? undefined : Number(match[1]);
}

/** A `platform` option as given (`os/arch[/variant]` or parsed), or `undefined` when absent. */
export function platformOption(value: string | Platform | undefined): Platform | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? parsePlatform(value) : value;
}
