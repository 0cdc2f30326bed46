//! What decoding and receiving frames allocate, counted by a global allocator: a length prefix
//! cannot make the decoder allocate more than the frame holds, and receiving small frames over a
//! real QUIC stream allocates a little per frame, not a 64 KiB buffer per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use protocol::transport::{self, Identity, Timeouts, SERVER_NAME};
use protocol::wire::{FrameDecoder, Heartbeat, Message, Sender, ALPN};

/// Counts the bytes each thread asks the allocator for.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes this thread allocated while running `f`.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

#[test]
fn a_small_frame_claiming_a_huge_string_allocates_almost_nothing() {
    // A Hello frame of 20 bytes whose worker_id claims 60 MiB.
    let mut frame = Vec::new();
    frame.extend_from_slice(&20u32.to_be_bytes());
    frame.push(1); // Hello
    frame.push(2); // protocol version
    frame.push(252); // a u32 length follows
    frame.extend_from_slice(&(60u32 << 20).to_be_bytes());
    frame.resize(24, b'x');
    let (result, bytes) = allocated_by(|| {
        let mut decoder = FrameDecoder::new(Sender::Worker);
        decoder.extend(&frame);
        decoder.next_message()
    });
    assert!(result.is_err(), "{result:?}");
    assert!(bytes < 64 * 1024, "decoding allocated {bytes} bytes");

    // The same for a Job (whose cap is 65 MiB): its eval_set_hash claims 60 MiB.
    let mut body = vec![2u8, 7, 0]; // tag, job id 7, empty dataset
    body.push(252);
    body.extend_from_slice(&(60u32 << 20).to_be_bytes());
    body.extend_from_slice(b"0123456789");
    let (result, bytes) = allocated_by(|| Message::decode_body(&body, Sender::Coordinator));
    assert!(result.is_err(), "{result:?}");
    assert!(bytes < 64 * 1024, "decoding allocated {bytes} bytes");
}

#[test]
fn receiving_small_frames_over_quic_allocates_little_per_frame() {
    // One thread runs both endpoints, so the counter sees everything the exchange allocates.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let timeouts = Timeouts {
            keep_alive: Duration::from_millis(500),
            idle: Duration::from_secs(5),
        };
        let coordinator = Identity::generate("c").expect("identity");
        let worker = Identity::generate("w").expect("identity");
        let server = transport::server_endpoint(
            &worker,
            "127.0.0.1:0".parse().expect("addr"),
            vec![coordinator.fingerprint()],
            timeouts,
        )
        .expect("server");
        let addr = server.local_addr().expect("addr");
        let client = transport::client_endpoint().expect("client");
        let config = transport::client_config(&coordinator, &worker.fingerprint(), timeouts, ALPN)
            .expect("config");
        const FRAMES: usize = 10_000;
        let frames: Vec<u8> = (0..FRAMES)
            .flat_map(|i| {
                Message::Heartbeat(Heartbeat { nonce: i as u64 })
                    .encode()
                    .expect("encodes")
            })
            .collect();
        let sender = tokio::spawn(async move {
            let conn = client
                .connect_with(config, addr, SERVER_NAME)
                .expect("connect")
                .await
                .expect("handshake");
            let (mut send, _recv) = conn.open_bi().await.expect("stream");
            send.write_all(&frames).await.expect("write");
            send.finish().expect("finish");
            let _ = send.stopped().await;
            (client, conn)
        });
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("conn");
        let (_send, mut recv) = conn.accept_bi().await.expect("stream");
        let mut decoder = FrameDecoder::new(Sender::Coordinator);
        let before = ALLOCATED.with(Cell::get);
        let mut count = 0;
        while let Some(m) = transport::receive(&mut recv, &mut decoder)
            .await
            .expect("valid frames")
        {
            assert_eq!(m, Message::Heartbeat(Heartbeat { nonce: count }));
            count += 1;
        }
        let bytes = ALLOCATED.with(Cell::get) - before;
        assert_eq!(count as usize, FRAMES);
        let per_frame = bytes / FRAMES;
        assert!(
            per_frame < 1024,
            "receiving {FRAMES} heartbeats allocated {bytes} bytes ({per_frame} per frame)"
        );
        let _ = sender.await;
    });
}
