//! `np-server migrate --store URL`: applies the embedded schema migrations to a PostgreSQL
//! database and prints the schema version (what `serve` does at start, alone, for those
//! who migrate before rolling out replicas of a new version).

use super::CliError;

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The database to migrate.
    #[command(flatten)]
    pub store: super::StoreArg,
}

/// Runs `migrate`.
pub fn run(args: &Args) -> Result<(), CliError> {
    let Some(url) = args.store.resolve()? else {
        return Err(CliError::Usage(
            "migrate needs --store URL, --store-file FILE or NP_STORE_URL: the PostgreSQL database to migrate; the embedded store needs no migration".into(),
        ));
    };
    let version = super::block_on(async {
        let store = super::connect_store(&url).await?;
        Ok(store.migrate().await?)
    })?;
    crate::outln!("schema version {version}");
    Ok(())
}
