# frozen_string_literal: true

# What the library takes as the answer to an HTTP call (the reply to that request, within
# the time the call may take), against a scripted HTTP server standing in for a node on
# 127.0.0.1; and the gem's files, wherever its gemspec is loaded from.
require_relative "test_helper"
require "open3"
require "rbconfig"
require "socket"
require "tmpdir"

class TestAnswers < Minitest::Test
  include FreshBus

  TOKEN = "t" * 43

  # A scripted node over HTTP, each connection served by a thread of its own: every
  # request is answered with the JSON of what the block returns for it (a Hash: the whole
  # reply), or never (nil: the connection is held, unanswered). connect_* and
  # close_connection are answered as a node answers them, unless the block answers.
  class FakeHttpNode
    attr_reader :url

    def initialize(&script)
      @script = script
      @server = TCPServer.new("127.0.0.1", 0)
      @url = "http://127.0.0.1:#{@server.addr[1]}"
      @threads = []
      @threads << Thread.new { accept }
    end

    def accept
      loop { @threads << Thread.new(@server.accept) { |client| serve(client) } }
    rescue IOError, SystemCallError
      nil
    end

    def serve(client)
      while (head = client.gets("\r\n\r\n"))
        request = JSON.parse(client.read(head[/content-length: *(\d+)/i, 1].to_i))
        reply = @script.call(request) || standard(request)
        next sleep unless reply # held: never answered

        text = JSON.generate(reply)
        client.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: #{text.bytesize}\r\n\r\n#{text}")
      end
    rescue IOError, SystemCallError
      nil
    ensure
      client.close
    end

    def standard(request)
      result = request["method"].start_with?("connect_") ? TOKEN : "ok"
      { "jsonrpc" => "2.0", "result" => result, "id" => request["id"] } if result == TOKEN || request["method"] == "close_connection"
    end

    def close
      @server.close
      @threads.each { |t| t.kill.join(2) }
    end
  end

  def fake_node(&script)
    (@fakes ||= []) << FakeHttpNode.new(&script)
    @fakes.last
  end

  def teardown
    BerryMQ.reset
    @fakes&.each(&:close)
    super
  end

  def test_a_reply_to_another_request_raises_transport_error
    node = fake_node do |request|
      next unless request["method"] == "send_message"

      id = request["id"]
      case request["params"]["identifier"]
      when "id:right" then { "jsonrpc" => "2.0", "result" => "ok", "id" => id }
      when "id:other" then { "jsonrpc" => "2.0", "result" => "ok", "id" => id + 1 }
      when "id:text" then { "jsonrpc" => "2.0", "result" => "ok", "id" => id.to_s }
      when "id:null" then { "jsonrpc" => "2.0", "result" => "ok", "id" => nil }
      when "id:other-error" then { "jsonrpc" => "2.0", "error" => { "code" => -32_602, "message" => "Invalid params" }, "id" => id + 1 }
      when "id:null-error" then { "jsonrpc" => "2.0", "error" => { "code" => -32_602, "message" => "Invalid params" }, "id" => nil }
      end
    end
    connection = BerryMQ.connect_oneway(node.url, timeout: 5)
    assert_nil connection.send_message("id:right")
    %w[id:other id:text id:null id:other-error].each do |identifier|
      error = assert_raises(BerryMQ::TransportError, identifier) { connection.send_message(identifier) }
      assert_instance_of BerryMQ::TransportError, error, identifier
      assert_match(/\A#{Regexp.escape(node.url)} answered send_message with a reply to request \S+, not to \d+: \{/, error.message)
    end
    # an error with id null is the node's, which could not tie it to the request (the
    # documented case: Message too large)
    error = assert_raises(BerryMQ::RemoteError) { connection.send_message("id:null-error") }
    assert_instance_of BerryMQ::RemoteError, error
    assert_equal(-32_602, error.code)
    assert_nil connection.send_message("id:right") # the connection goes on
  end

  def test_only_the_calls_that_wait_at_the_node_get_the_http_margin
    node = fake_node { |_| nil } # answers connect_* and close_connection, nothing else
    queue = BerryMQ.connect_via_queue(node.url, "job:*", timeout: 1)
    # answered at once by a node: the connection's timeout alone
    { "send_message" => -> { queue.send_message("job:x") }, "get_nowait" => -> { queue.get_nowait },
      "get(block: false)" => -> { queue.get(block: false) } }.each do |what, call|
      started = BerryMQ.monotonic
      error = assert_raises(BerryMQ::TransportError, what) { call.call }
      took = BerryMQ.monotonic - started
      assert_includes error.message, "did not answer within 1 s", what
      assert_operator took, :<, 3, "#{what} took #{took} s: the 5 s margin of a call that waits at the node"
    end
    # a blocking get and an ask wait at the node: their wait, a margin, and 5 s more
    started = BerryMQ.monotonic
    waits = [-> { queue.get(timeout: 0.5) }, -> { queue.ask("job:q", timeout: 0.5) }].map do |call|
      Thread.new do
        call.call
      rescue StandardError => e
        e
      end
    end
    waits.each { |t| flunk "a call that waits still waits after 20 s" unless t.join(20) }
    waits.map(&:value).each do |error|
      assert_instance_of BerryMQ::TransportError, error
      seconds = Float(error.message[/did not answer within ([\d.]+) s\z/, 1])
      assert_in_delta 6.5, seconds, 0.01, error.message # 0.5 s, 1 s (the timeout or ask's own), 5 s
    end
    assert_operator BerryMQ.monotonic - started, :>=, 6
  end

  def test_the_gemspec_lists_its_files_from_any_directory
    gemspec = File.expand_path("../berrymq.gemspec", __dir__)
    files = Dir.mktmpdir do |elsewhere|
      out, err, status = Open3.capture3(RbConfig.ruby, "-w", "-e", "puts Gem::Specification.load(ARGV[0]).files",
                                        gemspec, chdir: elsewhere)
      assert status.success?, err
      assert_empty err
      out.split("\n")
    end
    %w[lib/berrymq.rb lib/berrymq/http_channel.rb examples/oneway.rb README.md LICENSE berrymq.gemspec].each do |file|
      assert_includes files, file
    end
    assert_equal Dir.chdir(File.dirname(gemspec)) { Dir["lib/**/*.rb"] }.sort, files.grep(%r{\Alib/}).sort
  end

  def test_a_binary_string_that_is_not_utf8_is_named_so
    dump = BerryMQ::JSONRPC.method(:dump)
    error = assert_raises(ArgumentError) { dump.call(["x", "\xff".b]) }
    assert_includes error.message, "[1] is a String that is not valid UTF-8 (ASCII-8BIT bytes)"
    refute_includes error.message, "not valid ASCII-8BIT"
    error = assert_raises(ArgumentError) { dump.call({ "\xff".b => 1 }) }
    assert_includes error.message, "a Hash key that is not valid UTF-8"
    # bytes that are UTF-8 are still binary, not text: said so
    error = assert_raises(ArgumentError) { dump.call(["ü".b]) }
    assert_includes error.message, "[0] is a String of ASCII-8BIT bytes"
  end
end
