//! `chainsync migrate` creates the core schema and is idempotent.

mod common;

use common::TestDb;

fn migrate(url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chainsync"))
        .args(["migrate", "--database-url", url])
        .current_dir(common::repo_root())
        .env_remove("DATABASE_URL")
        .output()
        .expect("chainsync migrate runs")
}

#[tokio::test]
async fn migrate_twice_applies_once_and_keeps_data() {
    let db = TestDb::new().await;
    let first = migrate(&db.url);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let known = chainsync::db::MIGRATOR.iter().count();
    assert!(String::from_utf8_lossy(&first.stdout).contains(&format!("{known} applied")));

    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    sqlx::query(
        "INSERT INTO chains (name, kind, chain_id, genesis_hash) VALUES ('x', 'evm', 1, '\\x00')",
    )
    .execute(&pool)
    .await
    .expect("insert");

    let second = migrate(&db.url);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 applied"));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chains")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1, "a second migrate keeps stored rows");
    for table in [
        "chains",
        "contract_cursors",
        "evm_blocks",
        "evm_logs",
        "reorgs",
        "ton_account_cursors",
        "ton_transactions",
        "transfers",
        "transfer_history",
        "outbox",
        "chain_status",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&pool)
            .await
            .expect("lookup");
        assert!(exists, "table {table} missing");
    }
}

#[tokio::test]
async fn migrate_against_an_unreachable_database_fails_without_leaking_the_password() {
    let output = migrate("postgres://app:hunter2secret@127.0.0.1:1/chainsync");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(
        !stderr.contains("hunter2secret"),
        "password leaked: {stderr}"
    );
}
