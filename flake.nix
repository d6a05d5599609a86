{
  description = "ringstash: durable io_uring log-ingest appliance";

  # Pinned by branch only: no flake.lock is committed, because none could be generated
  # where this file was written (no access to GitHub). `nix flake lock` on first use
  # records the revision; commit that lock for reproducible builds. 26.05 because the
  # crates need rustc >= 1.88 (edition 2024, and the newest rust-version in Cargo.lock)
  # and because its `nixfmt` is the RFC 166 formatter (docs/deploy.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAll = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The listeners, by setting name (docs/settings.md), and the transport whose port
      # the firewall opens for each.
      tcpListeners = [
        "tcp_addr"
        "tcp_acked_addr"
        "syslog_addr"
        "relp_addr"
        "http_addr"
        "ws_addr"
      ];
      udpListeners = [ "syslog_udp_addr" ];

      # What Rust's SocketAddr parses (ringstash reads addresses with it): an IPv4
      # address or a bracketed IPv6 address, then a port. Host names are refused there,
      # so they are refused here, at evaluation, rather than at the service's start.
      addrRegex = "(([0-9]{1,3}\\.){3}[0-9]{1,3}|\\[[0-9a-fA-F:.]+]):([0-9]{1,5})";

      # The port of a listener address, or null for a listener that is off (the empty
      # string, which only syslog_udp_addr accepts), for port 0 (the kernel picks one,
      # so there is nothing to open), and for an address that does not parse (an
      # assertion names it).
      portOf =
        addr:
        let
          m = if builtins.isString addr then builtins.match addrRegex addr else null;
          port = if m == null then 0 else lib.toInt (builtins.elemAt m 2);
        in
        if port == 0 || port > 65535 then null else port;

      # The ports to open for the listeners named in keys, in settings s.
      portsOf = keys: s: lib.unique (lib.filter (p: p != null) (map (k: portOf (s.${k} or "")) keys));
    in
    {
      packages = forAll (
        pkgs:
        let
          ringstash = pkgs.rustPlatform.buildRustPackage {
            pname = "ringstash";
            version = "0.1.0";
            src = self;
            cargoLock.lockFile = ./Cargo.lock;
            # Both binaries of the workspace: ringstash and loadtest.
            cargoBuildFlags = [ "--workspace" ];
            # The test suite mounts tmpfs, kills processes, runs rsyslog, syslog-ng and a
            # browser, and needs io_uring: it runs in CI (.ci/run), not in the sandbox.
            # checks.vm runs the service for real instead.
            doCheck = false;
            # The sandbox has no .git: build.rs takes the revision from here instead
            # (ringstash_build_info); a dirty tree reports its dirtyRev.
            RINGSTASH_REVISION = builtins.substring 0 12 (self.rev or self.dirtyRev or "unknown");
            meta = {
              description = "Durable io_uring log-ingest appliance (raw TCP, syslog, RELP and HTTP ingest, group commit, WebSocket fan-out)";
              license = with lib.licenses; [
                mit
                asl20
              ];
              platforms = lib.platforms.linux;
              mainProgram = "ringstash";
            };
          };

          # The container listens on every address (a port is published only when
          # asked) and keeps its log in the /data volume.
          containerConfig = (pkgs.formats.toml { }).generate "ringstash.toml" {
            data_dir = "/data";
            tcp_addr = "0.0.0.0:5140";
            tcp_acked_addr = "0.0.0.0:5141";
            syslog_addr = "0.0.0.0:5514";
            relp_addr = "0.0.0.0:2514";
            http_addr = "0.0.0.0:8080";
            ws_addr = "0.0.0.0:8081";
            io_driver = "auto";
          };
        in
        {
          inherit ringstash;
          default = ringstash;

          # `nix build .#container && docker load < result`. Only the binary's closure,
          # no shell: the image runs as nobody, and io_uring works only under the
          # seccomp profile of docs/deploy.md (otherwise io_driver = "auto" uses epoll).
          container = pkgs.dockerTools.buildLayeredImage {
            name = "ringstash";
            tag = ringstash.version;
            fakeRootCommands = ''
              mkdir -p data
              chown 65534:65534 data
            '';
            config = {
              Entrypoint = [
                (lib.getExe ringstash)
                "serve"
                "--config"
                "${containerConfig}"
              ];
              User = "65534:65534";
              WorkingDirectory = "/data";
              Volumes."/data" = { };
              ExposedPorts = {
                "5140/tcp" = { };
                "5141/tcp" = { };
                "5514/tcp" = { };
                "2514/tcp" = { };
                "8080/tcp" = { };
                "8081/tcp" = { };
              };
            };
          };
        }
      );

      apps = forAll (
        pkgs:
        let
          pkg = self.packages.${pkgs.stdenv.hostPlatform.system}.ringstash;
        in
        {
          ringstash = {
            type = "app";
            program = "${pkg}/bin/ringstash";
            meta.description = "The appliance: serve, cat, check, append";
          };
          loadtest = {
            type = "app";
            program = "${pkg}/bin/loadtest";
            meta.description = "Load-test harness (loadtest/README.md)";
          };
          default = self.apps.${pkgs.stdenv.hostPlatform.system}.ringstash;
        }
      );

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            cargo
            rustc
            rustfmt
            clippy
            rust-analyzer
            # The comparison (loadtest/compare.sh) and the tests' peers.
            fio
            rsyslog
            syslog-ng
            netcat-openbsd
            curl
            websocat
            util-linux # logger
            chromium
            (python3.withPackages (ps: [
              ps.opentelemetry-sdk
              ps.opentelemetry-exporter-otlp-proto-http
            ]))
            nixfmt
          ];
        };
      });

      # nixfmt is the RFC 166 style formatter (nixfmt-rfc-style before 25.11).
      formatter = forAll (pkgs: pkgs.nixfmt);

      checks = forAll (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          pkg = self.packages.${system}.ringstash;
        in
        {
          package = pkg;

          # The firewall's port rule, at evaluation: no VM needed to see it wrong.
          ports =
            let
              s = {
                tcp_addr = "0.0.0.0:5140";
                tcp_acked_addr = "[::]:5141";
                syslog_addr = "10.0.0.1:5514";
                relp_addr = "127.0.0.1:0";
                http_addr = "[2001:db8::1]:8080";
                ws_addr = "0.0.0.0:8080";
                syslog_udp_addr = "";
              };
            in
            assert portsOf tcpListeners s == [
              5140
              5141
              5514
              8080
            ];
            assert portsOf udpListeners s == [ ];
            assert portsOf udpListeners { syslog_udp_addr = "0.0.0.0:514"; } == [ 514 ];
            assert map portOf [
              "localhost:80"
              "0.0.0.0"
              "0.0.0.0:65536"
              "::1:80"
            ] == [
              null
              null
              null
              null
            ];
            pkgs.runCommand "ringstash-ports" { } "touch $out";

          # The same gate as .ci/run, on the vendored crates of Cargo.lock.
          clippy = pkg.overrideAttrs (old: {
            pname = "ringstash-clippy";
            nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
            # No runHook: the cargo install hook's post-build step copies release
            # binaries, which clippy does not produce.
            buildPhase = ''
              cargo clippy --frozen --workspace --all-targets --all-features -- -D warnings
            '';
            installPhase = "touch $out";
          });

          fmt =
            pkgs.runCommand "ringstash-fmt"
              {
                nativeBuildInputs = [
                  pkgs.cargo
                  pkgs.rustfmt
                ];
              }
              ''
                cp -r ${self} src && chmod -R u+w src && cd src
                HOME=$TMPDIR cargo fmt --all -- --check
                touch $out
              '';

          # The module on a real NixOS: the service starts (Type=notify, so only once
          # serve has said READY=1), a second machine ingests through the ports the
          # firewall opened, and both read the records back.
          vm = pkgs.testers.runNixOSTest {
            name = "ringstash";
            nodes.server = {
              imports = [ self.nixosModules.default ];
              services.ringstash = {
                enable = true;
                tcpAddr = "0.0.0.0:5140";
                syslogAddr = "0.0.0.0:5514";
                syslogUdpAddr = "0.0.0.0:5514";
                httpAddr = "0.0.0.0:8080";
                openFirewall = true;
                settings.node_id = "vmtest";
              };
              environment.systemPackages = [
                pkg
                pkgs.curl
                pkgs.netcat-openbsd
              ];
              virtualisation.memorySize = 2048;
              virtualisation.cores = 2;
            };
            nodes.client =
              { pkgs, ... }:
              {
                environment.systemPackages = [
                  pkgs.curl
                  pkgs.netcat-openbsd
                ];
              };
            testScript = ''
              import json

              start_all()
              server.wait_for_unit("ringstash.service")
              server.wait_for_open_port(8080)
              client.wait_for_unit("multi-user.target")

              # Syslog over TCP: logger writes and closes; nothing is acknowledged, so
              # wait until the record is readable.
              client.succeed("logger --tcp -n server -P 5514 -t vmtest -p user.err 'from logger over tcp'")
              # HTTP: answered only once durable.
              out = json.loads(client.succeed(
                  "curl -sf -H 'Content-Type: application/json' "
                  "-d '[{\"service\":\"vmtest\",\"level\":\"INFO\",\"message\":\"from curl\"}]' "
                  "http://server:8080/v1/logs"
              ))
              assert out["count"] == 1, out
              # Syslog over UDP is not acknowledged and a datagram may be lost: resend
              # until it is read back.
              client.wait_until_succeeds(
                  "logger --udp -n server -P 5514 -t vmudp 'from logger over udp' && "
                  "curl -sf 'http://server:8080/v1/logs?from=earliest&service=vmudp' | grep -F 'from logger over udp'",
                  timeout=60,
              )
              client.wait_until_succeeds(
                  "curl -sf 'http://server:8080/v1/logs?from=earliest&service=vmtest&level=error' | grep -F 'from logger over tcp'",
                  timeout=60,
              )
              body = json.loads(client.succeed("curl -sf 'http://server:8080/v1/logs?from=earliest&service=vmtest'"))
              messages = [json.loads(r["data"])["message"] for r in body["records"]]
              assert "from curl" in messages and "from logger over tcp" in messages, messages

              # The same records from the segment files, beside the running server.
              cat = server.succeed("ringstash cat --data-dir /var/lib/ringstash")
              assert "from curl" in cat and "from logger over tcp" in cat, cat

              # The firewall is up: a port no listener asked for stays closed.
              server.succeed("nc -lk 9999 >/dev/null 2>&1 &")
              server.wait_for_open_port(9999)
              client.fail("nc -z -w 2 server 9999")

              # SIGTERM drains and exits 0; restart recovers the same log.
              server.succeed("systemctl restart ringstash.service")
              server.wait_for_unit("ringstash.service")
              server.wait_for_open_port(8080)
              server.succeed("curl -sf 'http://127.0.0.1:8080/v1/logs?from=earliest' | grep -F 'from curl'")
            '';
          };
        }
      );

      nixosModules.default =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        let
          cfg = config.services.ringstash;
          toml = pkgs.formats.toml { };
          addrType = lib.types.strMatching addrRegex;
          addrOption =
            setting: default:
            lib.mkOption {
              type = addrType;
              inherit default;
              example = "0.0.0.0:${toString (portOf default)}";
              description = "Address of the listener `${setting}` (docs/protocol.md). The default is ringstash's own, on loopback.";
            };

          # The typed options as settings; `settings` is merged over them, so a key set
          # there wins (and is what the firewall opens).
          typed = {
            data_dir = cfg.dataDir;
            tcp_addr = cfg.tcpAddr;
            tcp_acked_addr = cfg.tcpAckedAddr;
            syslog_addr = cfg.syslogAddr;
            syslog_udp_addr = if cfg.syslogUdpAddr == null then "" else cfg.syslogUdpAddr;
            relp_addr = cfg.relpAddr;
            http_addr = cfg.httpAddr;
            ws_addr = cfg.wsAddr;
            fsync = cfg.fsync;
            retention_bytes_max = cfg.retentionBytesMax;
            retention_ms = cfg.retentionMs;
            connections_max = cfg.connectionsMax;
            record_bytes_max = cfg.recordBytesMax;
            http_body_bytes_max = cfg.httpBodyBytesMax;
            subscribers_max = cfg.subscribersMax;
            io_driver = cfg.ioDriver;
          };
          effective = typed // cfg.settings;
          configFile = toml.generate "ringstash.toml" effective;
          stateDir = lib.removePrefix "/var/lib/" cfg.dataDir;
        in
        {
          options.services.ringstash = {
            enable = lib.mkEnableOption "ringstash log-ingest appliance";

            package = lib.mkOption {
              type = lib.types.package;
              default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
              defaultText = lib.literalExpression "ringstash.packages.\${system}.default";
              description = "The ringstash package.";
            };

            tcpAddr = addrOption "tcp_addr" "127.0.0.1:5140";
            tcpAckedAddr = addrOption "tcp_acked_addr" "127.0.0.1:5141";
            syslogAddr = addrOption "syslog_addr" "127.0.0.1:5514";
            relpAddr = addrOption "relp_addr" "127.0.0.1:2514";
            httpAddr = addrOption "http_addr" "127.0.0.1:8080";
            wsAddr = addrOption "ws_addr" "127.0.0.1:8081";
            syslogUdpAddr = lib.mkOption {
              type = lib.types.nullOr addrType;
              default = null;
              example = "0.0.0.0:514";
              description = "Address of the syslog UDP listener (`syslog_udp_addr`); null leaves it off. Datagrams are never acknowledged, and those the kernel drops are lost.";
            };

            dataDir = lib.mkOption {
              type = lib.types.strMatching "/var/lib/[^/].*";
              default = "/var/lib/ringstash";
              description = ''
                Directory of the log's segments (`data_dir`). It must lie under /var/lib:
                the service runs as a dynamic user, and only a StateDirectory is handed
                to that user on every start. For a dedicated disk, mount it at
                /var/lib/private/ringstash (where systemd keeps a dynamic user's state).
              '';
            };

            fsync = lib.mkOption {
              type = lib.types.strMatching "always|never|interval:[0-9]+";
              default = "always";
              description = "`always`: an ack means the record is on disk. `interval:<ms>` and `never` are NOT DURABLE: acked records may be lost in a crash.";
            };

            retentionBytesMax = lib.mkOption {
              type = lib.types.ints.unsigned;
              default = 0;
              description = "Remove the oldest sealed segments while the log exceeds this many bytes (`retention_bytes_max`); 0 keeps everything.";
            };

            retentionMs = lib.mkOption {
              type = lib.types.ints.unsigned;
              default = 0;
              example = 7 * 24 * 3600 * 1000;
              description = "Remove sealed segments whose newest record is older than this, in ms (`retention_ms`); 0 keeps everything.";
            };

            connectionsMax = lib.mkOption {
              type = lib.types.ints.between 1 1000000;
              default = 1024;
              description = "Open connections (TCP, syslog, RELP, HTTP) before new ones are refused (`connections_max`). LimitNOFILE is raised to leave room for them.";
            };

            recordBytesMax = lib.mkOption {
              type = lib.types.ints.positive;
              default = 1048576;
              description = "Largest record payload in bytes (`record_bytes_max`); longer lines are refused whole.";
            };

            httpBodyBytesMax = lib.mkOption {
              type = lib.types.ints.between 1 1073741824;
              default = 4194304;
              description = "Largest HTTP request body in bytes (`http_body_bytes_max`); 413 beyond.";
            };

            subscribersMax = lib.mkOption {
              type = lib.types.ints.between 1 100000;
              default = 256;
              description = "WebSocket subscribers before new ones get 503 (`subscribers_max`).";
            };

            ioDriver = lib.mkOption {
              type = lib.types.enum [
                "auto"
                "uring"
                "epoll"
              ];
              default = "auto";
              description = ''
                Network I/O driver (`io_driver`). `auto` uses io_uring where the kernel
                allows it and falls back to epoll, saying so in one start-up line;
                `uring` refuses to start without io_uring, naming the cause; `epoll`
                never tries io_uring.
              '';
            };

            settings = lib.mkOption {
              type = toml.type;
              default = { };
              example = {
                reactor_threads = 4;
                json_validate = true;
              };
              description = "Any setting of docs/settings.md, by its TOML key, merged over the typed options above (a key set here wins, for the firewall too). Unknown keys make serve refuse to start.";
            };

            openFirewall = lib.mkOption {
              type = lib.types.bool;
              default = false;
              description = "Open the TCP port of every listener address, and the UDP port of syslog_udp_addr when it is on, as configured (settings included). A listener on port 0 opens nothing.";
            };
          };

          config = lib.mkIf cfg.enable {
            assertions = map (k: {
              assertion = effective.${k} == "" && lib.elem k udpListeners || portOf effective.${k} != null;
              message = "services.ringstash: ${k} = \"${toString effective.${k}}\" is not an address like 0.0.0.0:5140 or [::]:5140 with a port in 1..=65535 (or \"\" for off, syslog_udp_addr only).";
            }) (tcpListeners ++ udpListeners);

            networking.firewall = lib.mkIf cfg.openFirewall {
              allowedTCPPorts = portsOf tcpListeners effective;
              allowedUDPPorts = portsOf udpListeners effective;
            };

            systemd.services.ringstash = {
              description = "ringstash log-ingest appliance";
              wantedBy = [ "multi-user.target" ];
              # A listener on a specific address can bind only once that address exists.
              wants = [ "network-online.target" ];
              after = [ "network-online.target" ];
              serviceConfig = {
                # serve sends READY=1 on $NOTIFY_SOCKET once every listener is bound.
                Type = "notify";
                NotifyAccess = "main";
                ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
                # SIGHUP reloads the TLS certificates and the token file (docs/security.md).
                ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
                # SIGTERM drains, commits, acks and exits 0; give it time.
                KillSignal = "SIGTERM";
                TimeoutStopSec = 30;
                # A failed fdatasync stops serve with a non-zero status: restart, and
                # recovery starts from what is on disk.
                Restart = "on-failure";
                RestartSec = 1;
                DynamicUser = true;
                StateDirectory = stateDir;
                StateDirectoryMode = "0750";
                WorkingDirectory = cfg.dataDir;
                LimitNOFILE = lib.max 65536 (cfg.connectionsMax + 1024);
                LimitMEMLOCK = "infinity"; # io_uring rings on kernels before 5.12
                # Hardening.
                NoNewPrivileges = true;
                ProtectSystem = "strict";
                ProtectHome = true;
                PrivateTmp = true;
                PrivateDevices = true;
                ProtectKernelTunables = true;
                ProtectKernelModules = true;
                ProtectKernelLogs = true;
                ProtectControlGroups = true;
                ProtectClock = true;
                ProtectHostname = true;
                ProtectProc = "invisible";
                RestrictAddressFamilies = [
                  "AF_INET"
                  "AF_INET6"
                  "AF_UNIX"
                ];
                RestrictNamespaces = true;
                RestrictRealtime = true;
                RestrictSUIDSGID = true;
                LockPersonality = true;
                MemoryDenyWriteExecute = true;
                CapabilityBoundingSet = "";
                SystemCallArchitectures = "native";
                # @system-service does not include io_uring: allow exactly its three calls.
                SystemCallFilter = [
                  "@system-service"
                  "io_uring_setup"
                  "io_uring_enter"
                  "io_uring_register"
                ];
                UMask = "0027";
              };
            };
          };
        };
    };
}
