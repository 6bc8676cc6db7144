/**
 * The image model reads JSON from stores it does not trust: a field of the wrong shape is
 * a ManifestError (exit 8) that names the field, never a crash further on.
 */
import { describe, expect, it } from 'vitest';
import { ManifestError } from '../../src/errors.js';
import { indexEntries, manifestLayers, parseConfig, parseDescriptor } from '../../src/image/manifest.js';
import { sha256 } from '../helpers/push.js';

const config = (runtime: unknown, extra: Record<string, unknown> = {}): Buffer =>
  Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: runtime, rootfs: { type: 'layers', diff_ids: [] }, ...extra }));
const digest = sha256(Buffer.from('x'));

function failure(run: () => unknown): ManifestError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestError);
    return error as ManifestError;
  }
  throw new Error('expected a ManifestError');
}

describe('image config', () => {
  it.each([
    ['Env', 'PATH=/bin', /"config"\.Env is not a list of strings \(the string "PATH=\/bin"\)/],
    ['Env', [1, 2], /"config"\.Env is not a list of strings \(a list\)/],
    ['Cmd', 'sh -c true', /"config"\.Cmd is not a list of strings/],
    ['Entrypoint', { a: 1 }, /"config"\.Entrypoint is not a list of strings \(object\)/],
    ['User', 0, /"config"\.User is not a string \(number\)/],
    ['WorkingDir', null, /"config"\.WorkingDir is not a string \(null\)/],
    ['Labels', { a: 1 }, /"config"\.Labels is not a map of strings/],
    ['ExposedPorts', ['80/tcp'], /"config"\.ExposedPorts is not a map of objects/],
  ])('refuses %s of the wrong shape, naming the field', (key, value, message) => {
    const error = failure(() => parseConfig(config({ [key]: value }), digest));
    expect(error.message).toMatch(message);
    expect(error.message).toContain(`config ${digest}`);
    expect(error.exitCode).toBe(8);
  });

  it('takes null for unset lists and maps, as Docker writes them, and a config with no runtime part', () => {
    const parsed = parseConfig(config({ Env: null, Cmd: null, Entrypoint: null, Labels: null, ExposedPorts: null, Volumes: null }), digest);
    expect(parsed.config?.Env).toBeNull();
    expect(parseConfig(config(undefined), digest).config).toBeUndefined();
  });

  it('refuses a runtime config that is not an object, and a platform field that is not a string', () => {
    expect(failure(() => parseConfig(config('run me'), digest)).message).toMatch(/"config" is not an object/);
    expect(failure(() => parseConfig(config({}, { os: ['linux'] }), digest)).message).toMatch(/"os" is not a string/);
  });

  it('needs rootfs for a pull, not for a look at the config', () => {
    const noRootfs = Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', config: { Cmd: ['sh'] } }));
    expect(failure(() => parseConfig(noRootfs, digest)).message).toMatch(/no rootfs/);
    expect(parseConfig(noRootfs, digest, { requireRootfs: false }).config?.Cmd).toEqual(['sh']);
  });
});

describe('descriptors, indexes and manifests', () => {
  const good = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: 1 };

  it('refuses urls, annotations and platform of the wrong shape, naming where', () => {
    expect(failure(() => parseDescriptor({ ...good, urls: 'http://x' }, 'layer 0')).message).toBe('layer 0: "urls" is not a list of strings');
    expect(failure(() => parseDescriptor({ ...good, annotations: { a: 1 } }, 'entry 2')).message).toBe(
      'entry 2: "annotations" is not a map of strings',
    );
    expect(failure(() => parseDescriptor({ ...good, platform: 'linux/amd64' }, 'entry 1')).message).toBe('entry 1: "platform" is not an object');
    expect(parseDescriptor({ ...good, urls: [], annotations: null }, 'x')).toEqual(good);
  });

  it('refuses an index without a list of manifests and a manifest without a list of layers', () => {
    expect(failure(() => indexEntries({ manifests: {} }, 'index sha256:x')).message).toBe('index sha256:x: "manifests" is not a list');
    expect(failure(() => manifestLayers({ layers: 'none' }, 'manifest sha256:y')).message).toBe('manifest sha256:y: "layers" is not a list');
    expect(failure(() => manifestLayers({ layers: [{ ...good, size: -1 }] }, 'manifest m')).message).toBe('manifest m layer 0: invalid size -1');
  });
});
