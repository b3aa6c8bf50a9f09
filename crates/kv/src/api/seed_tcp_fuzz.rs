//! The seed's raw-TCP framing and envelope decoding under any bytes: the
//! pure decoders of [`super::seed_tcp`] (`frame`, then prost's
//! `ReqEnvelope::decode`), driven the way a connection drives them.

use proptest::prelude::*;
use prost::Message;
use testkit::fuzz;

use super::seed_tcp::{Frame, frame};
use crate::proto::seed::{
    Data, GetRequest, GetResponse, ReqEnvelope, SetRequest, SetResponse, req_envelope,
};

const MAX: usize = 1 << 20;

fn data() -> impl Strategy<Value = Data> {
    (fuzz::text(20), fuzz::text(60)).prop_map(|(key, value)| Data { key, value })
}

/// An envelope with its type and at least one body, so it is a whole
/// request to the framer (types and bodies need not agree).
fn envelope() -> impl Strategy<Value = ReqEnvelope> {
    (
        prop_oneof![4 => 1i32..=4, 1 => any::<i32>()],
        proptest::option::of(data().prop_map(|req| SetRequest { req })),
        proptest::option::of(any::<i32>().prop_map(|error| SetResponse { error })),
        proptest::option::of(fuzz::text(20).prop_map(|key| GetRequest { key })),
        proptest::option::of(
            (any::<i32>(), proptest::option::of(data()))
                .prop_map(|(error, req)| GetResponse { error, req }),
        ),
        fuzz::text(20),
    )
        .prop_map(|(r#type, set_req, set_resp, get_req, get_resp, key)| {
            let mut envelope = ReqEnvelope {
                r#type,
                set_req,
                set_resp,
                get_req,
                get_resp,
            };
            if envelope.set_req.is_none()
                && envelope.set_resp.is_none()
                && envelope.get_req.is_none()
                && envelope.get_resp.is_none()
            {
                envelope.r#type = req_envelope::MsgType::GetRequestT as i32;
                envelope.get_req = Some(GetRequest { key });
            }
            envelope
        })
}

/// An envelope as the seed's clients send one: its type and the one body
/// that type needs.
fn request() -> impl Strategy<Value = ReqEnvelope> {
    prop_oneof![
        data().prop_map(|req| ReqEnvelope {
            r#type: req_envelope::MsgType::SetRequestT as i32,
            set_req: Some(SetRequest { req }),
            ..Default::default()
        }),
        fuzz::text(40).prop_map(|key| ReqEnvelope {
            r#type: req_envelope::MsgType::GetRequestT as i32,
            get_req: Some(GetRequest { key }),
            ..Default::default()
        }),
    ]
}

#[test]
fn a_request_of_every_type_frames_whole() {
    for kind in 1..=4 {
        let bytes = ReqEnvelope {
            r#type: kind,
            get_req: Some(GetRequest { key: "k".into() }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(frame(&bytes, MAX), Ok(Frame::Complete(bytes.len())));
    }
}

proptest! {
    #![proptest_config(fuzz::config(256))]

    /// Any bytes, under a small or a large limit: the framer never panics
    /// and a frame it finds is a non-empty prefix of what is there, which
    /// the envelope decoder then reads or refuses without panicking.
    #[test]
    fn fuzz_seed_tcp_frame(
        (bytes, _mutation) in fuzz::mutated(prop_oneof![
            1 => fuzz::bytes(200),
            3 => proptest::collection::vec(envelope(), 1..3).prop_map(|envelopes| {
                envelopes.iter().flat_map(Message::encode_to_vec).collect()
            }),
        ]),
        max in prop_oneof![Just(MAX), 0usize..64],
    ) {
        match frame(&bytes, max) {
            Ok(Frame::Complete(end)) => {
                prop_assert!(end > 0 && end <= bytes.len(), "{} of {}", end, bytes.len());
                let _ = ReqEnvelope::decode(&bytes[..end]);
            }
            Ok(Frame::Incomplete { need }) => {
                prop_assert!(need > bytes.len(), "needs {} of {} already there", need, bytes.len());
            }
            Err(_) => {}
        }
        let _ = ReqEnvelope::decode(&bytes[..]);
    }

    /// Pipelined requests (and an envelope of any bodies last): the framer
    /// ends the first exactly where the second begins, a shorter prefix is
    /// incomplete (needing more bytes, no more than the request has), and the first decodes to what was sent.
    #[test]
    fn fuzz_seed_tcp_pipelined_requests(
        envelopes in (proptest::collection::vec(request(), 1..3), envelope())
            .prop_map(|(mut requests, last)| { requests.push(last); requests }),
        cut in any::<prop::sample::Index>(),
    ) {
        let first = envelopes[0].encode_to_vec();
        let stream: Vec<u8> = envelopes.iter().flat_map(Message::encode_to_vec).collect();
        prop_assert_eq!(frame(&stream, MAX), Ok(Frame::Complete(first.len())));
        let prefix = cut.index(first.len());
        prop_assert!(
            matches!(frame(&first[..prefix], MAX), Ok(Frame::Incomplete { need }) if need > prefix && need <= first.len()),
            "a prefix of {} bytes of {} is incomplete and names what it needs", prefix, first.len()
        );
        prop_assert_eq!(ReqEnvelope::decode(&first[..]).expect("decodes"), envelopes[0].clone());
    }
}
