# frozen_string_literal: true

require "io/wait"
require "net/http"
require "socket"
require "timeout"

module BerryMQ
  # JSON-RPC over HTTP: each request is the body of POST / (Content-Type:
  # application/json) on a keep-alive connection. Calls from several threads at once (a
  # blocking get beside a send) each take a connection of their own from a small pool.
  #
  # For interconnect the node calls back: #callback_url starts a CallbackServer (plain
  # sockets from the standard library) on 127.0.0.1 and returns its URL.
  class HttpChannel
    # A node that answers more slowly than a call may wait (raised in the call's thread).
    class Overdue < StandardError; end
    private_constant :Overdue
    # An answer over what this client reads of one reply (raised while reading it).
    class Overlong < StandardError; end
    private_constant :Overlong
    # What is read of one answer's body: 4 x max_size, the node's bound on an answer
    # (docs/protocol.md Limits).
    # max_size counts as 1 MiB (a node's default) when it is smaller: a node bounds its
    # answers by its own max_size, not the client's (an ask's replies).
    ANSWER_FACTOR = 4
    # Seconds an answer may take beyond a call's timeout, for the calls that wait at the
    # node (a blocking get, an ask: the node answers at the end of their wait). The others
    # (send_message, get_nowait, close_connection...) the node answers at once: they end
    # within the timeout they are given, as over TCP.
    MARGIN = 5

    attr_reader :url

    # +on_close+ is accepted for the same interface as TcpChannel: HTTP keeps no lasting
    # connection whose loss could be noticed between calls.
    def initialize(url, host, port, handler:, timeout:, on_close: nil, max_size: JSONRPC::MAX_SIZE)
      @url = url
      @max_size = max_size
      @max_answer = ANSWER_FACTOR * [max_size, JSONRPC::MAX_SIZE].max
      @host = host
      @port = port
      @handler = handler
      @timeout = timeout
      @idle = []
      @lock = Mutex.new
      @next_id = 0
      @closed = false
      @server = nil
    end

    def closed?
      @closed
    end

    def callback_url
      @server ||= CallbackServer.new(@handler, max_body: @max_size)
      @server.url
    end

    # Runs the block (a call that waits at the node): each such call has a connection of
    # its own, so none waits for another here (TcpChannel#waiting bounds them).
    def waiting(_deadline)
      yield
    end

    # Calls +method+ and returns its result (errors as in TcpChannel#call). A reply to
    # another request (another id) raises TransportError; an error with id null is the
    # node's answer all the same (it could not tie it to the request: Message too large).
    def call(method, params, timeout = @timeout)
      id = @lock.synchronize { @next_id += 1 }
      margin = waits_at_node?(method, params) ? MARGIN : 0
      reply = post({ "jsonrpc" => "2.0", "method" => method, "params" => params, "id" => id }, timeout + margin)
      raise TransportError, "#{@url} answered #{method} with no content" if reply.nil?

      if reply.is_a?(Hash) && reply["id"] != id && !(reply["id"].nil? && !reply["error"].nil?)
        raise TransportError, "#{@url} answered #{method} with a reply to request #{JSON.generate(reply['id'])}, " \
                              "not to #{id}: #{JSON.generate(reply)[0, 200]}"
      end

      JSONRPC.result_of(reply, @url)
    end

    def close
      @closed = true
      idle = @lock.synchronize { @idle.dup.tap { @idle.clear } }
      idle.each { |http| http.finish if http.started? }
      @server&.close
    end

    private

    # Whether the node may hold the answer to +method+ on purpose: a blocking get, an ask.
    def waits_at_node?(method, params)
      method == "ask" || (method == "get" && params["block"] != false)
    end

    # POSTs one JSON value; the parsed reply, or nil for 204 No Content. The whole answer
    # must come within +timeout+ seconds (the call's, with its margin), not only each
    # piece of it: a node that trickles its answer byte by byte fails the call.
    # At most 4 x max_size bytes of the answer's body are read: a longer one fails the
    # call with TransportError naming the limit.
    def post(value, timeout)
      raise ConnectionClosed, "the connection to #{@url} is closed" if @closed

      text = JSONRPC.request_text(value, @max_size)
      started = BerryMQ.monotonic
      http = checkout(timeout)
      # what is left of +timeout+: opening a connection counts
      limit = [timeout - (BerryMQ.monotonic - started), 0.001].max
      http.read_timeout = limit
      begin
        response, body = Timeout.timeout(limit, Overdue) { exchange(http, text) }
      rescue Net::ReadTimeout, Net::WriteTimeout, Overdue
        drop(http)
        raise TransportError, "#{@url} did not answer within #{JSONRPC.seconds(timeout)} s"
      rescue Overlong
        drop(http)
        raise TransportError, "#{@url} answered more than #{@max_answer} bytes, the limit of what this client " \
                              "reads of one reply (4 x max(max_size, 1 MiB) = 4 x #{@max_answer / 4}); the connection was closed"
      rescue IOError, SystemCallError, SocketError, EOFError => e
        drop(http)
        raise ConnectionClosed, "the connection to #{@url} failed: #{e.message}"
      rescue Net::HTTPBadResponse, Net::HTTPHeaderSyntaxError, Net::ProtocolError, Timeout::Error,
             EncodingError, RangeError => e
        drop(http)
        raise TransportError, "#{@url} did not answer in HTTP (#{e.class}: #{e.message[0, 300]})#{explanation(e)}"
      end
      checkin(http)
      parse(response, body)
    end

    # Sends +text+ and reads the answer: [response, body], the body read up to the limit.
    def exchange(http, text)
      request = Net::HTTP::Post.new("/", "Content-Type" => "application/json", "Accept-Encoding" => "identity")
      body = +""
      response = http.request(request, text) do |answer|
        raise Overlong if answer["Content-Length"].to_i > @max_answer

        answer.read_body do |chunk|
          raise Overlong if body.bytesize + chunk.bytesize > @max_answer

          body << chunk
        end
      end
      [response, body.force_encoding(Encoding::UTF_8)]
    end

    # What a server that is not an HTTP one said, when it is readable: a berryMQ node's
    # TCP port answers an HTTP request with one JSON-RPC error line explaining itself.
    def explanation(error)
      line = error.message[/wrong status line: (".*")\z/m, 1]
      return "" unless line

      text = line.undump
      reply = JSONRPC.parse(text)
      said = reply.is_a?(Hash) && reply["error"].is_a?(Hash) ? reply["error"] : nil
      return "; it said: #{text.strip[0, 300]}" unless said

      data = said["data"].is_a?(String) ? ": #{said['data']}" : ""
      "; it said: #{said['message']}#{data}"
    rescue StandardError
      ""
    end

    def drop(http)
      http.finish if http.started?
    rescue IOError, SystemCallError
      nil
    end

    def parse(response, body)
      return nil if response.code == "204"

      type = response["Content-Type"].to_s
      unless type.start_with?("application/json")
        raise TransportError, "#{@url} answered HTTP #{response.code}: #{body.to_s.scrub.strip[0, 200]}"
      end

      raise TransportError, "#{@url} answered text that is not UTF-8" unless body.valid_encoding?

      JSONRPC.parse(body)
    rescue JSON::NestingError
      raise TransportError, "#{@url} answered text that nests arrays and objects more than " \
                            "#{JSONRPC::MAX_NESTING} levels deep, the limit of the protocol"
    rescue JSON::ParserError => e
      raise TransportError, "#{@url} answered text that is not JSON (#{e.message[0, 100]})"
    end

    def checkout(timeout)
      http = @lock.synchronize { @idle.pop }
      unless http
        http = Net::HTTP.new(@host, @port)
        http.keep_alive_timeout = 20
        http.max_retries = 0
      end
      http.open_timeout = [@timeout, timeout].min
      http.write_timeout = [@timeout, timeout].min
      begin
        http.start unless http.started?
      rescue IOError, SystemCallError, SocketError, Timeout::Error => e
        raise ConnectionClosed, "cannot reach #{@url}: #{e.message}"
      end
      http
    end

    def checkin(http)
      @lock.synchronize { @idle.size < 4 ? @idle.push(http) : http.finish }
    end
  end

  # A minimal HTTP/1.1 server for the node's calls back (style 01 over HTTP): POST with a
  # JSON-RPC body, answered 200 with JSON or 204; keep-alive; bodies over the client's
  # max_size (1 MiB by default: the node keeps its requests within it) get 413.
  #
  # Only the node calls it, so it refuses what a web page could send it, as a node does:
  # a Host that names neither its address nor localhost (421: DNS rebinding), any Origin
  # header (403: the node sends none), a Content-Type other than JSON's (415); every call
  # needs the token given to the node (Connection#answer).
  #
  # What a caller can make it hold is bounded, as on a node: a request line with its
  # headers over MAX_HEAD bytes gets 431; a connection beyond MAX_CLIENTS open at once
  # takes the place of the one idle longest (waiting for its next request: closed), or,
  # when every one is in the middle of a request, gets 503 and is closed (each connection
  # is served by a thread of its own; the node calls back on one, and opens another when
  # it finds it closed).
  class CallbackServer
    MAX_BODY = JSONRPC::MAX_SIZE
    MAX_HEAD = 16 * 1024 # as a node's (berrymq_jsonrpc_http.http11.MAX_HEAD)
    MAX_CLIENTS = 64
    MEDIA_TYPES = %w[application/json application/json-rpc application/jsonrequest].freeze

    attr_reader :url

    def initialize(handler, host = "127.0.0.1", max_body: MAX_BODY)
      @handler = handler
      @max_body = max_body
      @server = TCPServer.new(host, 0)
      @url = "http://#{host}:#{@server.addr[1]}"
      @names = [host, "localhost", "127.0.0.1", "::1"].map(&:downcase).uniq.freeze
      @clients = []
      @idle = {} # the clients waiting for their next request, the one idle longest first
      @lock = Mutex.new
      @thread = Thread.new { accept }
    end

    def close
      @server.close unless @server.closed?
      @lock.synchronize { @clients.each { |c| c.close unless c.closed? } }
      @thread.join(2)
    end

    private

    def accept
      loop do
        client = @server.accept
        taken = @lock.synchronize do
          make_room if @clients.size >= MAX_CLIENTS
          @clients.size < MAX_CLIENTS && @clients << client
        end
        next refuse_busy(client) unless taken

        Thread.new(client) { |c| serve(c) }
      end
    rescue IOError, SystemCallError
      nil
    end

    # Close the connection idle longest, if one is (under @lock): its thread's read ends.
    def make_room
      idle, = @idle.first
      return unless idle

      @idle.delete(idle)
      @clients.delete(idle)
      idle.close unless idle.closed?
    end

    # A connection over MAX_CLIENTS: told so, in its own thread (a caller that does not
    # read must not hold up the accepting one), and closed.
    def refuse_busy(client)
      Thread.new(client) do |c|
        text = "over #{MAX_CLIENTS} connections open at once"
        c.write("HTTP/1.1 503 Error\r\nContent-Type: text/plain\r\nContent-Length: #{text.bytesize}\r\n" \
                "Connection: close\r\n\r\n#{text}")
      rescue IOError, SystemCallError
        nil
      ensure
        c.close unless c.closed?
      end
    end

    def serve(client)
      while (line = next_request(client))
        verb, = line.split(" ", 2)
        headers, twice = read_headers(client, MAX_HEAD - line.bytesize)
        break plain(client, 431, "the request line and headers are over #{MAX_HEAD} bytes", linger: true) unless headers
        length = Integer(headers["content-length"] || "", exception: false)
        length = nil if length&.negative?
        refusal = refusal_of(verb, headers, twice)
        break plain(client, *refusal, discard: length) if refusal
        break plain(client, 411, "Content-Length required") unless length
        break reply(client, 413, JSONRPC.error_response(JSONRPC::CODES[:too_large], nil)) if length > @max_body

        client.write("HTTP/1.1 100 Continue\r\n\r\n") if headers["expect"].to_s.casecmp?("100-continue")
        body = client.read(length).to_s
        answer = answer_of(body)
        answer ? reply(client, 200, answer) : client.write("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        break if headers["connection"].to_s.casecmp?("close")
      end
    rescue IOError, SystemCallError
      nil
    ensure
      client.close unless client.closed?
      @lock.synchronize { @clients.delete(client) }
    end

    # The line of the client's next request (nil at its end), waited for as an idle client.
    def next_request(client)
      @lock.synchronize { @idle[client] = true }
      client.gets("\r\n", 8192)
    ensure
      @lock.synchronize { @idle.delete(client) }
    end

    # The status and text to refuse a request with, or nil to serve it.
    def refusal_of(verb, headers, twice)
      return [405, "only POST"] unless verb == "POST"
      return [400, "two Host headers"] if twice.include?("host")
      return [421, "this server answers to #{@url} only"] unless host_allowed?(headers["host"])
      return [403, "not for web pages (a request with Origin)"] if headers.key?("origin")

      type = headers["content-type"].to_s.split(";", 2)[0].to_s.strip.downcase
      return nil if MEDIA_TYPES.include?(type)

      [415, "send JSON-RPC with Content-Type: application/json"]
    end

    # The headers (names in lower case) and the names that came more than once; nil when
    # they are over +room+ bytes.
    def read_headers(client, room)
      headers = {}
      twice = []
      while (line = client.gets("\r\n", 8192)) && line != "\r\n"
        return nil if (room -= line.bytesize).negative?

        key, value = line.split(":", 2)
        next unless value

        name = key.strip.downcase
        twice << name if headers.key?(name)
        headers[name] = value.to_s.strip
      end
      [headers, twice]
    end

    # Whether a Host header (absent: a client that is no browser, served) names this
    # server: its address, localhost, 127.0.0.1 or [::1], with any port.
    def host_allowed?(host)
      return true if host.nil?

      host = host.strip.downcase
      name = if host.start_with?("[")
               host[/\A\[([^\]]*)\](:\d*)?\z/, 1]
             else
               host[/\A([^:]*)(:\d*)?\z/, 1]
             end
      !name.nil? && @names.include?(name)
    end

    def answer_of(body)
      JSONRPC.answer(JSONRPC.parse(body.force_encoding(Encoding::UTF_8)), @handler)
    rescue JSON::NestingError
      JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil,
                             { "limit" => JSONRPC::MAX_NESTING,
                               "detail" => "the text nests arrays and objects more than " \
                                           "#{JSONRPC::MAX_NESTING} levels deep, the limit" })
    rescue JSON::ParserError
      JSONRPC.error_response(JSONRPC::CODES[:parse_error], nil)
    end

    def reply(client, status, value)
      body = JSONRPC.dump(value)
      client.write("HTTP/1.1 #{status} #{status == 200 ? 'OK' : 'Error'}\r\nContent-Type: application/json\r\n" \
                   "Content-Length: #{body.bytesize}\r\n\r\n#{body}")
    end

    # Answers +text+ and closes; first reads what came of a body of +discard+ bytes (for up
    # to a second), since closing on unread input would reset the connection and the client
    # could lose the answer.
    #
    # With +linger+ (what is left unread is not known: headers over the limit) it stops
    # writing after the answer and reads on for up to a second, until the client closes.
    def plain(client, status, text, discard: nil, linger: false)
      if discard && discard <= @max_body
        deadline = BerryMQ.monotonic + 1
        while discard.positive? && (left = deadline - BerryMQ.monotonic).positive? && client.wait_readable(left)
          chunk = client.read_nonblock([discard, 65_536].min, exception: false)
          break if chunk.nil?

          discard -= chunk.bytesize if chunk.is_a?(String)
        end
      end
      client.write("HTTP/1.1 #{status} Error\r\nContent-Type: text/plain\r\nContent-Length: #{text.bytesize}\r\n" \
                   "Connection: close\r\n\r\n#{text}")
      drain(client) if linger
    end

    def drain(client)
      client.close_write
      deadline = BerryMQ.monotonic + 1
      while (left = deadline - BerryMQ.monotonic).positive? && client.wait_readable(left)
        break if client.read_nonblock(65_536, exception: false).nil?
      end
    end
  end
end
