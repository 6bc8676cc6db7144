/**
 * What a pull can be told. Shared by `pullRootfs()` (stream users), `pullRootfs$()`
 * (reactive users) and the CLI, so an option added here reaches all three.
 */
export interface PullOptions {
  /** Aborting stops the pull; the returned stream fails with an `AbortError`. */
  signal?: AbortSignal;
  /** `os/arch[/variant]`, e.g. `linux/arm64/v8`; linux and the host architecture when absent. */
  platform?: string;
  /** Registry credentials; they take precedence over the Docker config. */
  username?: string;
  password?: string;
  /** Speak plain HTTP to the registry (DESIGN.md §4 says when this is allowed). */
  plainHttp?: boolean;
  /** Where `config.json` lives; `DOCKER_CONFIG`, then `~/.docker`, when absent. */
  dockerConfigDir?: string;
}
