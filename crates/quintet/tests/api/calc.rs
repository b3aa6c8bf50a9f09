//! calc's gRPC API (`--services calc`) through a tonic client over a real
//! HTTP/2 connection: every method and every error status.

use calc::proto::v1::calculator_client::CalculatorClient;
use calc::proto::v1::{
    AddRequest, DivideRequest, MaxRequest, MinRequest, MultiplyRequest, NthPrimesRequest,
    PrimesRequest, SubtractRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{TestApp, spawn_app};

async fn client(server: &TestApp) -> CalculatorClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    CalculatorClient::new(channel)
}

#[tokio::test]
async fn every_method_answers_and_every_error_has_its_status() {
    let server = spawn_app(&["--services", "calc", "--calc-max-n", "2000000"]).await;
    let mut calc = client(&server).await;
    let add = calc.add(AddRequest { a: 1, b: 2 }).await.expect("add");
    assert_eq!(add.into_inner().result, 3);
    let sub = calc
        .subtract(SubtractRequest { a: 1, b: 2 })
        .await
        .expect("subtract");
    assert_eq!(sub.into_inner().result, -1);
    let mul = calc
        .multiply(MultiplyRequest { a: -4, b: 5 })
        .await
        .expect("multiply");
    assert_eq!(mul.into_inner().result, -20);
    let div = calc
        .divide(DivideRequest { a: 7, b: 2 })
        .await
        .expect("divide");
    assert_eq!(div.into_inner().result, 3);
    let max = calc
        .max(MaxRequest {
            values: vec![3, 9, -1],
        })
        .await
        .expect("max");
    assert_eq!(max.into_inner().result, 9);
    let min = calc
        .min(MinRequest {
            values: vec![3, 9, -1],
        })
        .await
        .expect("min");
    assert_eq!(min.into_inner().result, -1);
    let nth = calc
        .nth_primes(NthPrimesRequest {
            n: vec![10_001, 1, 2, 1_000_000],
        })
        .await
        .expect("nth primes");
    assert_eq!(nth.into_inner().primes, vec![104_743, 2, 3, 15_485_863]);

    let mut stream = calc
        .primes(PrimesRequest { from: 100, to: 200 })
        .await
        .expect("primes")
        .into_inner();
    let mut primes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        primes.extend(chunk.primes);
    }
    assert_eq!(primes.len(), 21);
    assert_eq!((primes[0], primes[20]), (101, 199));

    let errors = [
        (
            calc.add(AddRequest { a: i64::MAX, b: 1 }).await.map(drop),
            Code::OutOfRange,
            "add",
        ),
        (
            calc.multiply(MultiplyRequest { a: i64::MIN, b: -1 })
                .await
                .map(drop),
            Code::OutOfRange,
            "multiply",
        ),
        (
            calc.divide(DivideRequest { a: 1, b: 0 }).await.map(drop),
            Code::InvalidArgument,
            "zero",
        ),
        (
            calc.divide(DivideRequest { a: i64::MIN, b: -1 })
                .await
                .map(drop),
            Code::OutOfRange,
            "divide",
        ),
        (
            calc.max(MaxRequest { values: vec![] }).await.map(drop),
            Code::InvalidArgument,
            "values",
        ),
        (
            calc.nth_primes(NthPrimesRequest { n: vec![0] })
                .await
                .map(drop),
            Code::InvalidArgument,
            "n",
        ),
        (
            calc.nth_primes(NthPrimesRequest { n: vec![2_000_001] })
                .await
                .map(drop),
            Code::OutOfRange,
            "2000000",
        ),
        (
            calc.primes(PrimesRequest { from: 10, to: 1 })
                .await
                .map(drop),
            Code::InvalidArgument,
            "from",
        ),
    ];
    for (outcome, code, says) in errors {
        let status = outcome.expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(says),
            "{status:?} should say {says}"
        );
    }
}
