{
  description = "ringstash: durable io_uring log-ingest appliance";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        ringstash = pkgs.rustPlatform.buildRustPackage {
          pname = "ringstash";
          version = "0.1.0";
          src = self;
          cargoLock.lockFile = ./Cargo.lock;
          # Builds both binaries of the workspace: ringstash and loadtest.
          cargoBuildFlags = [ "--workspace" ];
          # The test suite mounts tmpfs, kills processes and needs io_uring: it runs in
          # CI (.ci/run), not in the Nix sandbox.
          doCheck = false;
          meta = {
            description = "Durable io_uring log-ingest appliance (raw TCP and HTTP, group commit, WebSocket fan-out)";
            license = with pkgs.lib.licenses; [ mit asl20 ];
            platforms = pkgs.lib.platforms.linux;
            mainProgram = "ringstash";
          };
        };
        default = ringstash;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc rustfmt clippy rust-analyzer fio netcat-openbsd curl chromium ];
        };
      });

      nixosModules.default = { config, lib, pkgs, ... }:
        let
          cfg = config.services.ringstash;
          toml = pkgs.formats.toml { };
          configFile = toml.generate "ringstash.toml" ({ data_dir = "/var/lib/ringstash"; } // cfg.settings);
        in
        {
          options.services.ringstash = {
            enable = lib.mkEnableOption "ringstash log-ingest appliance";
            package = lib.mkOption {
              type = lib.types.package;
              default = self.packages.${pkgs.system}.default;
              description = "The ringstash package.";
            };
            settings = lib.mkOption {
              type = toml.type;
              default = { };
              example = { tcp_addr = "0.0.0.0:5140"; http_addr = "0.0.0.0:8080"; connections_max = 4096; };
              description = "Settings written to the TOML file passed with --config (see `ringstash serve --help`). data_dir defaults to the state directory.";
            };
            openFirewall = lib.mkOption {
              type = lib.types.bool;
              default = false;
              description = "Open the default listener ports: raw TCP 5140 (one-way) and 5141 (acked), syslog 5514, RELP 2514, HTTP 8080, WebSocket 8081.";
            };
          };

          config = lib.mkIf cfg.enable {
            networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ 5140 5141 5514 2514 8080 8081 ];
            systemd.services.ringstash = {
              description = "ringstash log-ingest appliance";
              wantedBy = [ "multi-user.target" ];
              after = [ "network.target" ];
              serviceConfig = {
                # serve sends READY=1 on $NOTIFY_SOCKET once it listens.
                Type = "notify";
                NotifyAccess = "main";
                ExecStart = "${cfg.package}/bin/ringstash serve --config ${configFile}";
                # SIGTERM drains, commits, acks and exits 0; give it time.
                KillSignal = "SIGTERM";
                TimeoutStopSec = 30;
                # A failed fdatasync stops serve with a non-zero status: restart, and
                # recovery starts from what is on disk.
                Restart = "on-failure";
                RestartSec = 1;
                DynamicUser = true;
                StateDirectory = "ringstash";
                StateDirectoryMode = "0750";
                WorkingDirectory = "/var/lib/ringstash";
                LimitNOFILE = 65536;
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
                RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
                RestrictNamespaces = true;
                RestrictRealtime = true;
                RestrictSUIDSGID = true;
                LockPersonality = true;
                MemoryDenyWriteExecute = true;
                CapabilityBoundingSet = "";
                SystemCallArchitectures = "native";
                # @system-service does not include io_uring: allow exactly its three calls.
                SystemCallFilter = [ "@system-service" "io_uring_setup" "io_uring_enter" "io_uring_register" ];
                UMask = "0027";
              };
            };
          };
        };
    };
}
