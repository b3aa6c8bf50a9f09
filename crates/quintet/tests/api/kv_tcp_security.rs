//! kv's limits as the gRPC API answers them.

use crate::support::{TestApp, spawn_app};

async fn kv_server(args: &[&str]) -> TestApp {
    let mut all = vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    spawn_app(&all).await
}

#[tokio::test]
async fn a_grpc_value_over_the_message_limit_is_resource_exhausted() {
    use kv::proto::v1::SetRequest as GrpcSet;
    use kv::proto::v1::key_value_client::KeyValueClient;
    let server = kv_server(&["--kv-max-value-bytes", "1000000"]).await;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = KeyValueClient::new(channel);
    // Just over the value limit (kv refuses it) and far over it (tonic's
    // message limit refuses it before kv sees it): the same code.
    for size in [1_000_001, 3_000_000] {
        let refused = client
            .set(GrpcSet {
                key: "big".into(),
                value: vec![0; size],
            })
            .await
            .expect_err("over the limit");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{size}: {refused:?}"
        );
    }
}
