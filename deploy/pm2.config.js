// pm2 process file for a Murmuration validator (README, "Running as a service").
// The one-line equivalent:
//   pm2 start /usr/local/bin/coordinator --name murmuration-validator --kill-timeout 60000 -- --config /var/lib/murmuration/validator.toml run --subtensor.network finney --wallet.name validator --wallet.hotkey default
// Start with `pm2 start deploy/pm2.config.js`, then `pm2 save` and `pm2 startup` to survive a reboot.
module.exports = {
  apps: [
    {
      name: "murmuration-validator",
      script: "/usr/local/bin/coordinator",
      interpreter: "none",
      cwd: "/var/lib/murmuration",
      args: [
        "--config", "/var/lib/murmuration/validator.toml",
        "run",
        "--subtensor.network", "finney",
        "--wallet.name", "validator",
        "--wallet.hotkey", "default",
      ],
      // SIGTERM ends the coordinator with status 0 after recording the shutdown.
      kill_timeout: 60000,
      autorestart: true,
      restart_delay: 30000,
      max_restarts: 5,
      env: {
        RUST_LOG: "info",
        // HF_TOKEN: "hf_...",  // better: export it in the shell that runs `pm2 start`
      },
    },
  ],
};
