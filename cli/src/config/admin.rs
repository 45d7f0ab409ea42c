//! The operator commands' arguments: `crm secrets rotate` and the break-glass
//! `crm users reset-totp`, both working on the store directly.

use clap::{Args, Subcommand};

use super::{DataArgs, MigrateArgs, StoreArgs};

#[derive(Args, Debug)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub action: SecretsAction,
}

#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// Seal every stored secret with the current key (`--secrets-key` or `--secrets-key-file`),
    /// opening it with the current or a previous key (`--secrets-previous-keys`); plaintext
    /// secrets from before sealing are sealed too. Safe to repeat. With ClickHouse it may run
    /// while the servers run (with the old key as a previous key); stop `crm up` first on the
    /// embedded store, which holds its files.
    Rotate(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub action: UsersAction,
}

#[derive(Subcommand, Debug)]
pub enum UsersAction {
    /// Remove a user's second factor (a lost device and lost recovery codes); they sign in with
    /// their password and, if the policy requires one, enrol again. Audited.
    ResetTotp(ResetTotpArgs),
}

#[derive(Args, Debug)]
pub struct ResetTotpArgs {
    /// The user whose second factor to remove.
    #[arg(env = "CRM_RESET_TOTP_USER")]
    pub username: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}
