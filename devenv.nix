# The local run of config/profiles/dev.toml for devenv users: the same roles, configs, order and
# health checks, run by devenv's process manager (process-compose) instead of `hashpool up`.
# `devenv shell` gives the toolchain; `devenv up` builds the workspace and starts every role;
# logs go to process-compose (and .hashpool/data/ holds the databases, as with `hashpool up`).
# Keep it in step with config/profiles/dev.toml.
{ pkgs, ... }:

let
  bin = "target/debug";
  # A role's readiness: an HTTP endpoint answering 2xx.
  ready = port: path: {
    http_get = { host = "127.0.0.1"; inherit port path; };
    initial_delay_seconds = 1;
    period_seconds = 2;
    failure_threshold = 30;
  };
  # Restarted on failure, 1 s apart, at most 10 times (process-compose's policy; `hashpool up`
  # doubles its delays and counts failures in a row).
  availability = { restart = "on_failure"; backoff_seconds = 1; max_restarts = 10; };
  after = deps: builtins.listToAttrs (map (d: {
    name = d;
    value = { condition = "process_healthy"; };
  }) deps);
  role = { exec, deps ? [ ], probe ? null }: {
    exec = "${bin}/${exec}";
    process-compose = {
      inherit availability;
      # The build must have finished (and succeeded) first.
      depends_on = { build.condition = "process_completed_successfully"; } // after deps;
    } // (if probe == null then { } else { readiness_probe = probe; });
  };
in
{
  packages = [ pkgs.protobuf pkgs.pkg-config pkgs.openssl pkgs.sqlite pkgs.curl ];
  languages.rust.enable = true;
  env.RUST_LOG = "info";

  process.manager.implementation = "process-compose";

  processes = {
    # Builds every role once; the others wait for it to finish.
    build = {
      exec = "cargo build --workspace --bins";
      process-compose.availability.restart = "no";
    };
    template-provider = role {
      exec = "template-provider -c config/template-provider.config.toml";
      probe = ready 18443 "/status";
    };
    stats-pool = role {
      exec = "stats-pool -c config/stats-pool.config.toml -g config/shared/pool.toml";
      probe = ready 8091 "/api/v1/health";
    };
    stats-proxy = role {
      exec = "stats-proxy -c config/stats-proxy.config.toml -g config/shared/proxy.toml";
      probe = ready 8092 "/api/v1/health";
    };
    pool = role {
      exec = "pool -c config/pool.config.toml -g config/shared/pool.toml";
      deps = [ "template-provider" "stats-pool" ];
      probe = ready 9108 "/api/v1/health";
    };
    jd-server = role {
      exec = "jd-server -c config/jd-server.config.toml -g config/shared/pool.toml";
      deps = [ "template-provider" ];
      probe = ready 9114 "/api/v1/health";
    };
    mint = role {
      exec = "mint -c config/mint.config.toml -g config/shared/pool.toml";
      deps = [ "pool" ];
      probe = ready 3338 "/v1/info";
    };
    translator = role {
      exec = "translator -c config/translator.config.toml -g config/shared/proxy.toml";
      deps = [ "pool" "mint" "stats-proxy" ];
      probe = ready 9109 "/api/v1/health";
    };
    web-pool = role {
      exec = "web-pool -c config/web-pool.config.toml -g config/shared/pool.toml";
      deps = [ "stats-pool" ];
      probe = ready 8081 "/api/v1/health";
    };
    web-proxy = role {
      exec = "web-proxy -c config/web-proxy.config.toml -g config/shared/proxy.toml";
      deps = [ "stats-proxy" ];
      probe = ready 3030 "/api/v1/health";
    };
    mining-device = role {
      exec = "mining-device --pool 127.0.0.1:34254 --pool-pubkey 9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72 --user-identity local-miner --nominal-hashrate 50000 --limit-hashrate --wallet-mint-url http://127.0.0.1:3338 --wallet-db .hashpool/data/mining-device/wallet.sqlite --wallet-mnemonic-file .hashpool/data/mining-device/mnemonic";
      deps = [ "pool" "mint" ];
    };
    mining-device-sv1 = role {
      exec = "mining-device-sv1 --address 127.0.0.1:34255 --user local.sv1 --limit-hashrate 50000";
      deps = [ "translator" ];
    };
  };

  enterShell = ''
    echo "Hashpool: 'devenv up' starts a local run (or: cargo build --workspace --bins && target/debug/hashpool up)"
  '';
}
