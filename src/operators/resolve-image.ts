import { Observable } from 'rxjs';
import type { ImageReference } from '../reference/index.js';
import type { RegistryClient } from '../registry/client.js';
import { resolveImage, type ResolvedImage } from '../registry/manifest.js';

export interface ResolveImageOperatorOptions {
  /** `os/arch[/variant]`; linux and the host architecture when absent. */
  platform?: string;
  /** Keep foreign layers (with their `urls`) instead of refusing them. */
  allowForeign?: boolean;
}

/**
 * Token, manifest or index, platform pick and config, as one cold Observable: each
 * subscription resolves anew, and unsubscribing aborts the requests in flight.
 *
 * @example
 * ```ts
 * resolveImage$(RegistryClient.for(ref), ref, { platform: 'linux/arm64' })
 *   .subscribe((image) => console.log(image.manifestDigest));
 * ```
 */
export function resolveImage$(
  client: RegistryClient,
  ref: ImageReference,
  options: ResolveImageOperatorOptions = {},
): Observable<ResolvedImage> {
  return new Observable<ResolvedImage>((subscriber) => {
    const controller = new AbortController();
    resolveImage(client, ref, {
      signal: controller.signal,
      ...(options.platform === undefined ? {} : { platform: options.platform }),
      ...(options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign }),
    }).then(
      (image) => {
        subscriber.next(image);
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}
