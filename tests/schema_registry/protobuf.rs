//! Protobuf: reference payloads decoded past their message indexes.

use super::*;

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoOrder {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(string, tag = "2")]
    item: String,
    #[prost(int32, tag = "3")]
    qty: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Refund {
    #[prost(int64, tag = "1")]
    order_id: i64,
    #[prost(message, repeated, tag = "2")]
    lines: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Line {
    #[prost(string, tag = "1")]
    item: String,
    #[prost(int32, tag = "2")]
    qty: i32,
}

#[test]
fn reference_protobuf_payloads_decode_past_their_message_indexes() {
    let registry = serve();
    let http = HttpSchemaRegistry::new(registry.url());

    let order = fixture("proto_order");
    assert_eq!(order.bytes()[5], 0, "the single-byte [0]");
    let decoded = ProtobufDecoder::<ProtoOrder>::new(http.clone())
        .expect_message(&[0])
        .decode(&msg(order.bytes()))
        .unwrap();
    assert_eq!(
        decoded,
        ProtoOrder {
            id: 7,
            item: "pear".into(),
            qty: 2
        }
    );

    let refund = fixture("proto_refund");
    let decoded = ProtobufDecoder::<Refund>::new(http.clone())
        .expect_message(&[1])
        .decode(&msg(refund.bytes()))
        .unwrap();
    let expect: Vec<(String, i32)> = refund.expect["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["item"].as_str().unwrap().into(),
                l["qty"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(decoded.order_id, 7);
    assert_eq!(
        decoded
            .lines
            .iter()
            .map(|l| (l.item.clone(), l.qty))
            .collect::<Vec<_>>(),
        expect
    );

    let line = fixture("proto_refund_line");
    let mut decoder = ProtobufDecoder::<Line>::new(http.clone()).expect_message(&[1, 0]);
    let decoded = decoder.decode(&msg(line.bytes())).unwrap();
    assert_eq!((decoded.item.as_str(), decoded.qty), ("plum", 4));
    // Another message of the schema than the one expected is refused, not misread.
    let err = decoder.decode(&msg(refund.bytes())).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                format: "Protobuf",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(registry.requests(PROTOBUF_ID), 1, "cached across decoders");

    // An Avro id, an unknown id and a broken frame.
    let (avro, _) = avro_fixtures().remove(0);
    let mut any = ProtobufDecoder::<ProtoOrder>::new(http);
    assert!(matches!(
        any.decode(&msg(avro)).unwrap_err(),
        DecodeError::Malformed {
            format: "Protobuf",
            ..
        }
    ));
    let mut unknown = order.bytes();
    unknown[1..5].copy_from_slice(&UNKNOWN_ID.to_be_bytes());
    assert!(matches!(
        any.decode(&msg(unknown)).unwrap_err(),
        DecodeError::UnknownSchema { id: UNKNOWN_ID }
    ));
    let mut truncated = refund.bytes();
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(
        any.decode(&msg(truncated)).unwrap_err(),
        DecodeError::Malformed {
            format: "Protobuf",
            ..
        }
    ));
    assert!(matches!(
        any.decode(&msg(vec![0, 0, 0, 0, 2, 0x80])).unwrap_err(),
        DecodeError::Malformed {
            format: WIRE_FORMAT,
            ..
        }
    ));
}
